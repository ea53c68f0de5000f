"""Self-training on unlabelled data: confidence-thresholded pseudo-labels (FixMatch's loss when
the teacher sees a weak view and the student a strong one), and the EMA teacher."""

from __future__ import annotations

import copy

import torch
from torch import nn


def pseudo_label_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor,
                      threshold: float) -> dict[str, torch.Tensor]:
    """Cross-entropy of the student towards the teacher's most likely class, on the items
    the teacher gives at least ``threshold`` probability (mean over all items, so a batch
    with few confident items pulls little). Returns ``loss`` and ``mask_rate``, the share of
    items used."""
    conf, pseudo = teacher_probs.detach().max(dim=1)
    mask = (conf >= threshold).float()
    per = nn.functional.cross_entropy(student_logits.float(), pseudo, reduction="none")
    return {"loss": (per * mask).mean(), "mask_rate": mask.mean()}


class EMATeacher(nn.Module):
    """An exponential moving average of a network's weights (BatchNorm statistics copied),
    updated after each optimiser step; kept in the module, so checkpoints hold it and a
    resumed run continues it exactly. Its parameters never train."""

    def __init__(self, net: nn.Module, decay: float = 0.999) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.net = copy.deepcopy(net).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        """Move the average towards ``net``'s current weights; copy its buffers."""
        for avg, cur in zip(self.net.parameters(), net.parameters(), strict=True):
            avg.mul_(self.decay).add_(cur.detach(), alpha=1.0 - self.decay)
        for avg, cur in zip(self.net.buffers(), net.buffers(), strict=True):
            avg.copy_(cur)

    def train(self, mode: bool = True) -> EMATeacher:
        """The teacher always predicts in eval mode."""
        super().train(False)
        return self

    @torch.no_grad()
    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        return self.net(*args, **kwargs)
