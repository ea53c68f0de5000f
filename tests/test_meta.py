"""Meta-learning on episodes: MAML's meta-gradient against finite differences, first-order
MAML against its definition, Meta-SGD's learned step sizes, ProtoNet's loss."""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from transferkit.fewshot.meta import MAML, ProtoNet
from transferkit.train import StepContext

CTX = StepContext(epoch=0, epochs=1, step=0, steps_per_epoch=1, global_step=0, total_steps=1)


def _episode(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    xs, xq = torch.randn(6, 3, generator=g, dtype=torch.float64), \
        torch.randn(9, 3, generator=g, dtype=torch.float64)
    return {"support": (xs, torch.tensor([0, 1, 2, 0, 1, 2])),
            "query": (xq, torch.tensor([0, 1, 2] * 3))}


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()


def test_maml_meta_gradient_matches_finite_differences() -> None:
    batch = _episode()
    maml = MAML(_net(), inner_steps=1, inner_lr=0.5)
    maml.training_step(batch, CTX)["loss"].backward()
    names = [n for n, _ in maml.net.named_parameters()]
    base = {n: p.detach().clone() for n, p in maml.net.named_parameters()}

    def meta_loss(params: dict) -> float:
        (xs, ys), (xq, yq) = batch["support"], batch["query"]
        p = {n: v.clone().requires_grad_(True) for n, v in params.items()}
        inner = nn.functional.cross_entropy(functional_call(maml.net, p, (xs,)), ys)
        grads = torch.autograd.grad(inner, list(p.values()))
        fast = {n: v - 0.5 * g for (n, v), g in zip(p.items(), grads, strict=True)}
        return float(nn.functional.cross_entropy(functional_call(maml.net, fast, (xq,)),
                                                 yq).detach())

    eps = 1e-6
    for n in names:
        for idx in [(0,) * base[n].dim(), tuple(s - 1 for s in base[n].shape)]:
            plus = {k: v.clone() for k, v in base.items()}
            minus = {k: v.clone() for k, v in base.items()}
            plus[n][idx] += eps
            minus[n][idx] -= eps
            fd = (meta_loss(plus) - meta_loss(minus)) / (2 * eps)
            got = float(dict(maml.net.named_parameters())[n].grad[idx])
            assert abs(fd - got) < 1e-6, (n, idx, fd, got)


def test_first_order_maml_is_the_query_gradient_at_the_adapted_weights() -> None:
    batch = _episode(1)
    maml = MAML(_net(), inner_steps=2, inner_lr=0.3, first_order=True)
    maml.training_step(batch, CTX)["loss"].backward()
    fast = maml.adapt(*batch["support"], create_graph=False)
    fast = {n: w.detach().requires_grad_(True) for n, w in fast.items()}
    xq, yq = batch["query"]
    q = nn.functional.cross_entropy(functional_call(maml.net, fast, (xq,)), yq)
    want = torch.autograd.grad(q, list(fast.values()))
    for (n, p), w in zip(maml.net.named_parameters(), want, strict=True):
        torch.testing.assert_close(p.grad, w, msg=n)
    second = MAML(_net(), inner_steps=2, inner_lr=0.3)
    second.training_step(batch, CTX)["loss"].backward()
    assert any(not torch.allclose(a.grad, b.grad) for a, b in
               zip(second.net.parameters(), maml.net.parameters(), strict=True))


def test_meta_sgd_learns_its_step_sizes() -> None:
    batch = _episode(2)
    meta = MAML(_net(), inner_steps=1, inner_lr=0.1, learn_lr=True)
    meta.lrs = meta.lrs.double()
    meta.training_step(batch, CTX)["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in meta.lrs.values())
    assert {tuple(p.shape) for p in meta.lrs.values()} == \
        {tuple(p.shape) for p in meta.net.parameters()}


def test_protonet_loss_is_cross_entropy_over_scaled_cosine_to_prototypes() -> None:
    torch.manual_seed(0)
    net = ProtoNet(nn.Identity(), ways=3, shots=2, queries=3, scale=5.0)
    batch = _episode(3)
    (xs, ys), (xq, yq) = batch["support"], batch["query"]
    protos = torch.stack([xs[ys == c].mean(0) for c in range(3)])
    sims = nn.functional.normalize(xq, dim=1) @ nn.functional.normalize(protos, dim=1).T
    want = nn.functional.cross_entropy(5.0 * sims, yq)
    got = net.training_step({"support": (xs.float(), ys), "query": (xq.float(), yq)}, CTX)
    torch.testing.assert_close(got["loss"].double(), want, rtol=1e-5, atol=1e-5)
