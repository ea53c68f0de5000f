"""Seed 002's learned optimiser: a coordinate-wise LSTM (Andrychowicz et al. 2016, "Learning
to learn by gradient descent by gradient descent") that reads each parameter's gradient and
the loss and outputs that parameter's update, meta-trained across episodes on MAML's outer
loop.

Every coordinate (scalar weight) of the adapted network is one row of a small LSTM cell that
is shared by all coordinates; its input is the gradient preprocessed as in the paper
(log-magnitude and sign, with the raw gradient scaled when tiny), the same for the loss, and
the raw gradient; its hidden state starts at zero in every episode and carries across the
inner steps. The update is a linear read-out of the hidden state plus a learned multiple of
the gradient (initialised to minus the inner learning rate, so training starts from SGD).
The meta-parameters are the network's initial weights and the LSTM's weights: the queries'
loss after the inner steps trains both, through the inner steps (or not, first-order).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call

from transferkit.fewshot.meta import MAML


def preprocess(x: torch.Tensor, p: float = 10.0) -> torch.Tensor:
    """Andrychowicz et al.'s gradient preprocessing: (log|x|/p, sign x) when |x| >= e^-p,
    else (-1, e^p x); two columns per coordinate."""
    big = x.abs() >= math.exp(-p)
    first = torch.where(big, torch.log(x.abs().clamp_min(1e-20)) / p, -torch.ones_like(x))
    second = torch.where(big, torch.sign(x), math.exp(p) * x)
    return torch.stack([first, second], dim=-1)


class CoordinateLSTM(nn.Module):
    """One LSTM cell applied to every coordinate: (gradient, loss) in, update out."""

    def __init__(self, hidden: int = 20, inner_lr: float = 0.1, out_scale: float = 0.1,
                 seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.cell = nn.LSTMCell(5, hidden)
            self.out = nn.Linear(hidden, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.grad_scale = nn.Parameter(torch.tensor(-float(inner_lr)))
        self.hidden, self.out_scale = int(hidden), float(out_scale)

    def forward(self, grad: torch.Tensor, loss: torch.Tensor,
                state: tuple[torch.Tensor, torch.Tensor] | None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The update of a flat vector of coordinates, and the new LSTM state."""
        g = grad.reshape(-1)
        inp = torch.cat([preprocess(g), preprocess(loss.reshape(1)).expand(len(g), 2),
                         g[:, None]], dim=1)
        if state is None:
            zero = inp.new_zeros(len(g), self.hidden)
            state = (zero, zero)
        h, c = self.cell(inp, state)
        step = self.out_scale * self.out(h)[:, 0] + self.grad_scale * g
        return step.reshape(grad.shape), (h, c)


class LSTMOptimizerMAML(MAML):
    """MAML whose inner loop is a learned coordinate-wise LSTM optimiser (see the module):
    ``adapt`` applies the LSTM's updates; the outer loop (``training_step``), validation and
    ``predict_episode`` are MAML's."""

    def __init__(self, net: nn.Module, *, inner_steps: int = 5, inner_lr: float = 0.1,
                 first_order: bool = False, hidden: int = 20, val_shots: int = 1,
                 val_episodes: int = 100, seed: int = 0) -> None:
        super().__init__(net, inner_steps=inner_steps, inner_lr=inner_lr,
                         first_order=first_order, val_shots=val_shots,
                         val_episodes=val_episodes)
        self.optimizer_net = CoordinateLSTM(hidden, inner_lr, seed=seed)

    def adapt(self, xs: torch.Tensor, ys: torch.Tensor, *, create_graph: bool | None = None
              ) -> dict[str, torch.Tensor]:
        """Fast weights after the LSTM's inner steps on the support."""
        graph = (not self.first_order) if create_graph is None else create_graph
        fast = {n: p for n, p in self.net.named_parameters() if p.requires_grad}
        states: dict[str, tuple[torch.Tensor, torch.Tensor] | None] = dict.fromkeys(fast)
        for _ in range(self.inner_steps):
            loss = nn.functional.cross_entropy(functional_call(self.net, fast, (xs,)), ys)
            grads = torch.autograd.grad(loss, list(fast.values()), create_graph=graph)
            new = {}
            for (n, w), g in zip(fast.items(), grads, strict=True):
                step, states[n] = self.optimizer_net(g, loss if graph else loss.detach(),
                                                     states[n])
                new[n] = w + step
            fast = new
        return fast
