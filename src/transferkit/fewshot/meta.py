"""Meta-learning on episodes, through the one Trainer: prototypical networks, MAML (second- and
first-order) and Meta-SGD (a learned per-parameter inner learning rate: the update rule
itself is learned).

Each is a TrainModule whose batch is one episode, ``{"support": (x, y), "query": (x, y)}``
with labels 0..N-1 (the Trainer's :class:`~transferkit.train.plan.EpisodicPlan`). The inner
loop of MAML runs on ``torch.func.functional_call`` with the fast weights as a dict: no
parameter is ever overwritten, and the meta-gradient flows through the inner steps (or not,
first-order). BatchNorm in the inner loop: every BatchNorm of the adapted network runs on
its stored statistics (eval mode) during inner and outer steps alike, so an episode's
support statistics never leak into the queries and the adapted weights are what changes
(the learned network must therefore carry its own normalisation, as the feature MLP here
does not need any).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from transferkit.fewshot.methods import protonet_cosine
from transferkit.train import StepContext, TrainModule


class ProtoNet(TrainModule):
    """Prototypical network: queries classified by the cosine similarity (times a learned
    scale) of their embeddings to the support's class means; cross-entropy on the queries.

    Validation draws fixed few-shot episodes from the validation items' embeddings and
    reports their nearest-prototype accuracy (``val_accuracy``)."""

    def __init__(self, embed: nn.Module, *, ways: int, shots: int, queries: int,
                 val_episodes: int = 100, seed: int = 0, scale: float = 10.0) -> None:
        super().__init__()
        self.embed = embed
        self.log_scale = nn.Parameter(torch.tensor(float(np.log(scale))))
        self.ways, self.shots, self.queries = ways, shots, queries
        self.val_episodes, self.seed = val_episodes, seed

    def forward(self, x: Any) -> torch.Tensor:
        """Embeddings."""
        return self.embed(x)

    def episode_logits(self, xs: Any, ys: torch.Tensor, xq: Any) -> torch.Tensor:
        """Query logits of one episode: scaled cosine similarity to the support means."""
        emb = self(torch.cat([xs, xq])) if isinstance(xs, torch.Tensor) else \
            torch.cat([self(xs), self(xq)])
        es, eq = emb[:len(ys)], emb[len(ys):]
        n = int(ys.max()) + 1
        protos = torch.stack([es[ys == c].mean(0) for c in range(n)])
        sims = nn.functional.normalize(eq, dim=1) @ nn.functional.normalize(protos, dim=1).T
        return self.log_scale.exp() * sims

    def training_step(self, batch: Mapping[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Cross-entropy of the queries against the support's prototypes."""
        (xs, ys), (xq, yq) = batch["support"], batch["query"]
        logits = self.episode_logits(xs, ys, xq)
        return {"loss": nn.functional.cross_entropy(logits, yq), "logits": logits, "y": yq,
                "scale": self.log_scale.exp().detach()}

    def validate(self, streams: Mapping[str, Iterable[Any]]) -> dict[str, float]:
        """Nearest-prototype accuracy on fixed episodes of the validation embeddings."""
        from transferkit.fewshot.episodes import run_episodes

        out: dict[str, float] = {}
        for name, batches in streams.items():
            feats, labels = [], []
            for x, y in batches:
                feats.append(self(x).float().cpu().numpy())
                labels.append(y.cpu().numpy())
            f, lab = np.concatenate(feats), np.concatenate(labels)
            counts = np.bincount(lab[lab >= 0])
            ways = min(self.ways, int((counts >= 2).sum()))
            if ways < 2:
                continue
            per = int(np.sort(counts)[-ways])
            shots = max(1, min(self.shots, per - 1))
            queries = max(1, min(self.queries, per - shots))
            res = run_episodes(f, lab, method=protonet_cosine, ways=ways, shots=shots,
                               queries=queries, episodes=self.val_episodes, seed=self.seed)
            key = "val_accuracy" if name == "val" else f"{name}_val_accuracy"
            out[key] = res.mean
        return out


class MAML(TrainModule):
    """MAML (Finn et al. 2017) and Meta-SGD (Li et al. 2017) on a small network.

    The meta-parameters are the initial weights of ``net`` (an N-way classifier); an episode
    adapts them with ``inner_steps`` gradient steps on the support (``inner_lr``, or with
    ``learn_lr`` one learned step size per weight: Meta-SGD, "learning the update rule"),
    and the loss of the adapted weights on the queries trains the initial weights (and the
    step sizes) through the inner steps; ``first_order`` drops the second-order terms.
    """

    def __init__(self, net: nn.Module, *, inner_steps: int = 5, inner_lr: float = 0.1,
                 first_order: bool = False, learn_lr: bool = False, val_shots: int = 1,
                 val_episodes: int = 100) -> None:
        super().__init__()
        self.net = net
        self.val_shots, self.val_episodes = int(val_shots), int(val_episodes)
        self.inner_steps, self.first_order = int(inner_steps), bool(first_order)
        self.learn_lr = bool(learn_lr)
        self.inner_lr = float(inner_lr)
        names = [n for n, p in net.named_parameters() if p.requires_grad]
        self.lrs = nn.ParameterDict({n.replace(".", "__"): nn.Parameter(
            torch.full_like(dict(net.named_parameters())[n], self.inner_lr))
            for n in names}) if learn_lr else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the (unadapted) initial weights."""
        return self.net(x)

    def train(self, mode: bool = True) -> MAML:
        """Eval mode for every BatchNorm of the adapted network (see the module)."""
        super().train(mode)
        for m in self.net.modules():
            if isinstance(m, nn.modules.batchnorm._NormBase):
                m.eval()
        return self

    def adapt(self, xs: torch.Tensor, ys: torch.Tensor, *, create_graph: bool | None = None
              ) -> dict[str, torch.Tensor]:
        """Fast weights after the inner loop on the support (a dict: name -> tensor)."""
        graph = (not self.first_order) if create_graph is None else create_graph
        fast = {n: p for n, p in self.net.named_parameters() if p.requires_grad}
        for _ in range(self.inner_steps):
            loss = nn.functional.cross_entropy(functional_call(self.net, fast, (xs,)), ys)
            grads = torch.autograd.grad(loss, list(fast.values()), create_graph=graph)
            fast = {n: w - self._lr(n) * g
                    for (n, w), g in zip(fast.items(), grads, strict=True)}
        return fast

    def _lr(self, name: str) -> torch.Tensor | float:
        return self.lrs[name.replace(".", "__")] if self.lrs is not None else self.inner_lr

    def training_step(self, batch: Mapping[str, Any], ctx: StepContext) -> dict[str, Any]:
        """The queries' loss under the weights adapted on the support."""
        (xs, ys), (xq, yq) = batch["support"], batch["query"]
        with ctx.autocast(False):  # second-order terms in full precision
            fast = self.adapt(xs, ys)
            logits = functional_call(self.net, fast, (xq,))
            loss = nn.functional.cross_entropy(logits, yq)
        return {"loss": loss, "logits": logits, "y": yq}

    def predict_episode(self, xs: torch.Tensor, ys: torch.Tensor, xq: torch.Tensor
                        ) -> torch.Tensor:
        """Query logits after adapting to the support (no meta-gradient kept)."""
        with torch.enable_grad():
            fast = self.adapt(xs, ys, create_graph=False)
        with torch.no_grad():
            return functional_call(self.net, {n: w.detach() for n, w in fast.items()}, (xq,))

    def validate(self, streams: Mapping[str, Iterable[Any]]) -> dict[str, float]:
        """Accuracy on fixed episodes of the validation items, each adapted on its support."""
        from transferkit.fewshot.episodes import run_episodes

        ways = int(dict(self.net.named_parameters())[self._last_weight()].shape[0])
        out: dict[str, float] = {}
        for name, batches in streams.items():
            xs, ys = zip(*[(x, y) for x, y in batches], strict=True)
            x, lab = torch.cat(xs), torch.cat(ys).cpu().numpy()
            x = x.to(next(self.net.parameters()).device)
            counts = np.bincount(lab[lab >= 0])
            per = int(np.sort(counts)[-ways]) if (counts >= 2).sum() >= ways else 0
            if per < 2:
                continue
            shots = max(1, min(self.val_shots, per - 1))

            dev = x.device  # the items stay on the model's device; episodes pick by index

            def method(s: np.ndarray, sl: np.ndarray, q: np.ndarray, n: int,
                       x: torch.Tensor = x, dev: torch.device = dev) -> np.ndarray:
                si, qi = (torch.as_tensor(a[:, 0], device=dev) for a in (s, q))
                return self.predict_episode(x[si], torch.as_tensor(sl, device=dev),
                                            x[qi]).cpu().numpy()

            res = run_episodes(np.arange(len(x))[:, None], lab, method=method, ways=ways,
                               shots=shots, queries=max(1, min(15, per - shots)),
                               episodes=self.val_episodes, seed=0)
            out["val_accuracy" if name == "val" else f"{name}_val_accuracy"] = res.mean
        return out

    def _last_weight(self) -> str:
        return [n for n, p in self.net.named_parameters() if p.dim() == 2][-1]


def feature_mlp(d: int, ways: int, hidden: int = 256, seed: int = 0) -> nn.Module:
    """The network MAML adapts on frozen features: d -> hidden (ReLU) -> ways."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, ways))
