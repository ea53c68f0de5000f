"""Gradient reversal: identity going forward, gradient times -coeff going back (DANN)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.coeff * grad, None


def grad_reverse(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    """``x`` unchanged; its gradient is multiplied by ``-coeff`` on the way back."""
    return _Reverse.apply(x, float(coeff))


class GradientReversal(nn.Module):
    """The gradient-reversal layer as a module (``coeff`` given per call)."""

    def forward(self, x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
        return grad_reverse(x, coeff)


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """DANN's ramp 2 / (1 + exp(-gamma p)) - 1: 0 at the start of training, near 1 at the end.

    ``progress`` is the Trainer's training progress p in [0, 1] (never a hidden counter, so a
    resumed run ramps exactly as an uninterrupted one)."""
    p = min(1.0, max(0.0, float(progress)))
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0
