"""Domain-alignment losses, one signature for all: ``loss(source_features, target_features,
source_weights=None, coeff=1.0) -> {"loss": tensor, <named scalars>}``.

A method differs from another only in the loss object it uses, and instance weights (e.g.
from a density ratio) come free: each loss weighs the source samples by ``source_weights``
(normalised to mean 1). ``coeff`` is the gradient-reversal strength of adversarial losses
(the others ignore it; their weight is applied by the caller).

- :class:`DomainAdversarialLoss` (DANN): a domain classifier behind a gradient-reversal layer.
- :class:`CoralLoss` (Deep CORAL): squared distance between the feature covariances.
- :class:`MMDLoss` (DAN): multi-kernel maximum mean discrepancy, bandwidths from the batch.
- :class:`~transferkit.losses.cmd.CMDLoss`: central moment discrepancy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from transferkit.losses.grl import grad_reverse


def _normalised(weights: torch.Tensor | None, n: int, like: torch.Tensor) -> torch.Tensor:
    """Per-sample weights summing to 1 (uniform when None)."""
    if weights is None:
        return torch.full((n,), 1.0 / n, dtype=like.dtype, device=like.device)
    w = weights.to(dtype=like.dtype, device=like.device).reshape(-1)
    if w.shape[0] != n:
        raise ValueError(f"{w.shape[0]} source weights for {n} source samples")
    return w / w.sum().clamp_min(1e-12)


class AlignmentLoss(nn.Module, ABC):
    """Base of the alignment losses (see the module docstring for the signature)."""

    #: logged name of the loss value
    name = "align_loss"
    #: adversarial: ``coeff`` is its gradient-reversal strength, so its weight is not ramped
    adversarial = False

    @abstractmethod
    def forward(self, source: torch.Tensor, target: torch.Tensor,
                source_weights: torch.Tensor | None = None,
                coeff: float = 1.0) -> dict[str, torch.Tensor]:
        """{"loss": the alignment loss, and any named scalars to log}."""


class DomainAdversarialLoss(AlignmentLoss):
    """DANN: a domain classifier (source = 1, target = 0) on features passed through a
    gradient-reversal layer of strength ``coeff``; minimising its cross-entropy trains the
    classifier to tell the domains apart and the features to make that impossible.

    Returns the loss and ``domain_acc``, the classifier's accuracy on the batch (it drifts
    towards 0.5 as the features align). The classifier ends in one logit and a binary
    cross-entropy on it, so its gradient reaches the features."""

    name = "domain_loss"
    adversarial = True

    def __init__(self, in_dim: int, hidden: int = 256, dropout: float = 0.5) -> None:
        super().__init__()
        self.classifier = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, 1))

    def forward(self, source: torch.Tensor, target: torch.Tensor,
                source_weights: torch.Tensor | None = None,
                coeff: float = 1.0) -> dict[str, torch.Tensor]:
        ns, nt = len(source), len(target)
        feats = grad_reverse(torch.cat([source, target]), coeff)
        logits = self.classifier(feats.float()).squeeze(1)
        truth = torch.cat([torch.ones(ns, device=logits.device),
                           torch.zeros(nt, device=logits.device)])
        per = nn.functional.binary_cross_entropy_with_logits(logits, truth, reduction="none")
        ws = _normalised(source_weights, ns, per)
        loss = 0.5 * ((per[:ns] * ws).sum() + per[ns:].mean())
        acc = ((logits > 0).float() == truth).float().mean()
        return {"loss": loss, "domain_acc": acc.detach()}


def _covariance(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Weighted covariance of the rows of ``x`` (``w`` sums to 1)."""
    mean = (w[:, None] * x).sum(0, keepdim=True)
    xc = x - mean
    scale = 1.0 / (1.0 - (w ** 2).sum()).clamp_min(1e-12)  # unbiased for weighted samples
    return scale * (xc * w[:, None]).T @ xc


class CoralLoss(AlignmentLoss):
    """Deep CORAL: ||C_source - C_target||_F^2 / (4 d^2), C the feature covariances (source
    rows weighted). Zero when both batches have the same second-order statistics."""

    name = "coral_loss"

    def forward(self, source: torch.Tensor, target: torch.Tensor,
                source_weights: torch.Tensor | None = None,
                coeff: float = 1.0) -> dict[str, torch.Tensor]:
        s, t = source.float(), target.float()
        d = s.shape[1]
        cs = _covariance(s, _normalised(source_weights, len(s), s))
        ct = _covariance(t, _normalised(None, len(t), t))
        return {"loss": ((cs - ct) ** 2).sum() / (4.0 * d * d)}


class MMDLoss(AlignmentLoss):
    """Multi-kernel MMD (DAN): the squared maximum mean discrepancy between the batches under
    a sum of Gaussian kernels whose bandwidths are ``multipliers`` times the batch's mean
    squared pairwise distance (source items weighted; no gradient through the bandwidth).
    Zero for identical batches."""

    name = "mmd_loss"

    def __init__(self, multipliers: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)) -> None:
        super().__init__()
        self.multipliers = tuple(float(m) for m in multipliers)

    def forward(self, source: torch.Tensor, target: torch.Tensor,
                source_weights: torch.Tensor | None = None,
                coeff: float = 1.0) -> dict[str, torch.Tensor]:
        s, t = source.float(), target.float()
        ns = len(s)
        x = torch.cat([s, t])
        d2 = torch.cdist(x, x).pow(2)
        ws = _normalised(source_weights, ns, s)
        wt = _normalised(None, len(t), t)
        u = torch.cat([ws, wt]).detach() / 2  # the bandwidth ignores zero-weight items too
        base = ((u @ d2.detach() @ u) / (1 - (u ** 2).sum()).clamp_min(1e-12)).clamp_min(1e-8)
        k = sum(torch.exp(-d2 / (base * m)) for m in self.multipliers)
        kss, ktt, kst = k[:ns, :ns], k[ns:, ns:], k[:ns, ns:]
        mmd = ws @ kss @ ws + wt @ ktt @ wt - 2 * ws @ kst @ wt
        return {"loss": mmd.clamp_min(0.0)}
