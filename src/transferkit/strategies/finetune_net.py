"""The network fine-tuning trains: the trunk's trainable part, dropout and a linear head, with
the conservative penalties (L2-SP towards the pretrained weights, LwF-style feature
preservation) and per-stage learning rates."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from transferkit.heads import Head
from transferkit.train import StepContext, TrainModule
from transferkit.train.trunk import TrunkView, channels_last, stage_param_groups


class FineTuneNet(TrainModule):
    """Trunk (trainable stages) -> dropout -> linear head, with the conservative penalties.

    ``view.module`` maps the training inputs (images, or cached activations of the frozen
    stages) to pooled features; ``view.stages`` are its trainable stages from input to
    output; ``view.frozen`` modules stay in eval mode.
    """

    def __init__(self, view: TrunkView, head: nn.Linear, *, dropout: float = 0.0,
                 class_weight: torch.Tensor | None = None, label_smoothing: float = 0.0,
                 l2sp: float = 0.0, lwf: float = 0.0, head_lr_scale: float = 1.0,
                 layer_decay: float = 1.0, weight_decay: float = 0.01) -> None:
        super().__init__()
        self.trunk = view.module.to(memory_format=torch.channels_last)
        self.head = head
        self.drop = nn.Dropout(dropout)
        self.stage_modules = list(view.stages)
        self.set_frozen_modules(view.frozen)
        self.register_buffer("class_weight", class_weight if class_weight is not None else
                             torch.ones(head.out_features))
        self.label_smoothing = label_smoothing
        self.l2sp = l2sp
        self.lwf = lwf
        self.head_lr_scale = head_lr_scale
        self.layer_decay = layer_decay
        self.weight_decay = weight_decay
        trainable = [(n, p) for n, p in self.trunk.named_parameters() if p.requires_grad]
        self._anchor_names = [n for n, _ in trainable]
        # L2-SP anchors: the starting (pretrained) weights; not saved with the model
        self._anchors = [p.detach().clone() for _, p in trainable] if l2sp > 0 else []
        self.reference = None
        if lwf > 0:
            ref = copy.deepcopy(view.module).eval()
            for p in ref.parameters():
                p.requires_grad_(False)
            self.reference = [ref]  # a list: kept out of state_dict and the optimiser

    def features(self, x: Any) -> torch.Tensor:
        """Pooled features of a batch (4-d inputs run channels-last: faster convolutions)."""
        return self.trunk(channels_last(x))

    def forward(self, x: Any) -> torch.Tensor:
        """Class logits."""
        return self.head(self.drop(self.features(x)))

    def training_step(self, batch: Any, ctx: StepContext) -> dict[str, torch.Tensor]:
        """Cross-entropy (class-weighted, smoothed) + L2-SP + feature-preservation penalty."""
        x, y = batch
        feats = self.features(x)
        logits = self.head(self.drop(feats))
        loss = nn.functional.cross_entropy(logits, y, weight=self.class_weight,
                                           label_smoothing=self.label_smoothing)
        if self.l2sp > 0 and self._anchors:
            params = dict(self.trunk.named_parameters())
            sq = sum(((params[n] - a.to(params[n].device)) ** 2).sum()
                     for n, a in zip(self._anchor_names, self._anchors, strict=True))
            loss = loss + 0.5 * self.l2sp * sq
        if self.reference is not None:
            ref_net = self.reference[0].to(feats.device)
            # same mode, module by module (BN on batch statistics where the trunk's is):
            # the penalty is exactly zero before the first step
            for m, r in zip(self.trunk.modules(), ref_net.modules(), strict=True):
                r.training = m.training
            with torch.no_grad():
                ref = ref_net(channels_last(x))
            loss = loss + self.lwf * nn.functional.mse_loss(feats, ref)
        return {"loss": loss, "logits": logits, "y": y}

    def param_groups(self) -> list[dict[str, Any]]:
        """Head at ``head_lr_scale``; trainable stages decayed by ``layer_decay`` per stage
        down from the top. With L2-SP the trunk gets no decay towards zero."""
        head = {"params": list(self.head.parameters()), "lr_scale": self.head_lr_scale,
                "weight_decay": self.weight_decay}
        return [head, *stage_param_groups(self.trunk, self.stage_modules,
                                          layer_decay=self.layer_decay,
                                          weight_decay=0.0 if self.l2sp > 0
                                          else self.weight_decay)]


def new_head(d: int, k: int, seed: int) -> nn.Linear:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Linear(d, k)


def as_head(linear: nn.Linear) -> Head:
    head = Head({"kind": "linear", "in_dim": linear.in_features,
                 "num_classes": linear.out_features})
    head.body.load_state_dict(linear.state_dict())
    return head.eval()
