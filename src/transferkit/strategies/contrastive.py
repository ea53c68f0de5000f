"""Few-shot contrastive transfer (SetFit-style): pull same-class examples together, then a head.

Stage 1 fine-tunes the encoder on pairs drawn from the few labels: every pair of examples in a
batch is a positive (same class) or a negative. ``loss="supcon"`` is the supervised contrastive
loss (each example against all others in the batch, temperature-scaled cosine similarities);
``loss="pairs"`` is SetFit's cosine-similarity regression (cos -> 1 for positives, 0 for
negatives). Stage 2 fits a shallow head on the fine-tuned embeddings (as ``probe``).

Works on any backbone (text or image): it only needs ``feature_module`` and the data layer.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from transferkit.backbones import Backbone
from transferkit.data.dataset import Dataset
from transferkit.strategies.base import (
    GradientStrategy,
    as_dataset,
    auto_epochs,
    check_modality,
    require_labels,
)
from transferkit.strategies.probe import ProbeClassifier
from transferkit.strategies.train_params import ESTIMATOR
from transferkit.train import StepContext, TrainModule
from transferkit.train.trunk import Trunk, fresh_backbone

LOSSES = ("supcon", "pairs")


class ContrastiveNet(TrainModule):
    """Encoder trained with a contrastive loss on the labels of each batch."""

    def __init__(self, trunk: nn.Module, loss: str = "supcon", temperature: float = 0.07,
                 weight_decay: float = 0.01) -> None:
        super().__init__()
        self.trunk = trunk
        self.loss = loss
        self.temperature = temperature
        self.weight_decay = weight_decay

    def param_groups(self) -> list[dict[str, Any]]:
        """Every trainable encoder parameter, one group."""
        return [{"params": [p for p in self.trunk.parameters() if p.requires_grad],
                 "weight_decay": self.weight_decay}]

    def training_step(self, batch: Any, ctx: StepContext) -> dict[str, torch.Tensor]:
        """The contrastive loss of one batch (no logits: there is no head yet)."""
        x, y = batch
        z = nn.functional.normalize(self.trunk(x).float(), dim=-1)
        return {"loss": contrastive_loss(z, y, self.loss, self.temperature)}


def contrastive_loss(z: torch.Tensor, y: torch.Tensor, kind: str = "supcon",
                     temperature: float = 0.07) -> torch.Tensor:
    """Supervised contrastive loss, or SetFit's pair loss, over all pairs of a batch.

    ``z``: L2-normalised embeddings [B, d]; ``y``: labels [B]. Zero when the batch has no
    positive pair (nothing to pull together).
    """
    sim = z @ z.T
    eye = torch.eye(len(y), dtype=torch.bool, device=z.device)
    pos = (y[:, None] == y[None, :]) & ~eye
    if kind == "pairs":
        target = pos.float()
        return ((sim - target)[~eye] ** 2).mean()
    logits = (sim / temperature).masked_fill(eye, float("-inf"))
    logp = logits.log_softmax(dim=1)
    n_pos = pos.sum(1)
    has = n_pos > 0
    if not bool(has.any()):
        return (z.sum() * 0.0)
    per = -(logp.masked_fill(~pos, 0.0)).sum(1)[has] / n_pos[has]
    return per.mean()


@dataclass(**ESTIMATOR)
class ContrastiveClassifier(GradientStrategy):
    """Few-shot: contrastive fine-tuning of the encoder on the labelled pairs, then a head.

    ``freeze``: leading backbone stages kept frozen (default 1: a text encoder's token
    embeddings). ``epochs=None`` picks about 100 optimiser steps (at most 10 epochs).
    ``head``/``C`` as in ``probe`` (logistic regression on the fine-tuned embeddings).
    Training parameters (``lr`` default 5e-5, ``schedule`` default constant, ...) are those of
    :class:`~transferkit.strategies.base.GradientStrategy`.
    """

    backbone: str | Backbone = "minilm"
    loss: str = "supcon"
    temperature: float = 0.07
    freeze: int = 1
    head: str = "logreg"
    C: float | str = "auto"
    seed: int = 0
    arch: str | None = None
    skip_bad: bool = False
    cache: Any = True
    lr: float | None = 5e-5  # training defaults of its own
    schedule: str = "constant"

    def check_params(self) -> None:
        """Every option, before any data is read (a ValueError names the bad one)."""
        super().check_params()
        if self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r}: choose one of {', '.join(LOSSES)}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        ProbeClassifier(head=self.head, C=self.C).check_params()

    def fit(self, X: Dataset | Sequence[Any], y: Sequence[Any] | None = None,
            X_val: Dataset | Sequence[Any] | None = None,
            y_val: Sequence[Any] | None = None) -> ContrastiveClassifier:
        """Contrastive fine-tuning on X, then the head on X's new embeddings (val picks C)."""
        self.check_params()
        t0 = time.perf_counter()
        train = require_labels(as_dataset(X, y, "X"), "contrastive training")
        bb = fresh_backbone(self.backbone, arch=self.arch,
                            device=self.device, precision=self.precision)
        check_modality(bb, train)
        trunk = Trunk(bb, cache=self.cache, log=self.log)
        n_freeze = trunk.n_freeze(self.freeze, keep_one=True)
        counts = np.bincount(train.labels, minlength=len(train.class_names))
        if (counts[counts > 0] < 2).all():
            raise ValueError(f"{train.source}: contrastive training needs at least two examples "
                             f"of some class (positive pairs); every class has one")
        epochs = self.epochs or auto_epochs(len(train), self.batch_size)
        view = trunk.view(train, None, n_freeze, label="contrastive")
        net = ContrastiveNet(view.module, self.loss, self.temperature, self.weight_decay)
        net.set_frozen_modules(view.frozen)
        res = self._trainer("contrastive", epochs=epochs, lr=self.lr).fit(
            net, view.train, fingerprint={
                "stage": "contrastive", "loss": self.loss, "freeze": self.freeze,
                "classes": list(train.class_names), "n_train": len(train),
                "backbone": bb.spec()})
        self.trainable_params_ = trunk.trainable_params(n_freeze)
        bb = trunk.finish()
        self.train_seconds_ = res.seconds
        self.history_ = [{"phase": "contrastive", **row} for row in res.history]
        self.epochs_ = epochs
        # stage 2: the head on the fine-tuned embeddings (fresh features: no stale cache)
        probe = ProbeClassifier(backbone=bb, head=self.head, C=self.C, cache=False,
                                skip_bad=self.skip_bad, seed=self.seed, progress=self.progress,
                                log=self.log)
        probe.fit(train, X_val=None if X_val is None else as_dataset(X_val, y_val, "X_val"))
        self.backbone_ = bb
        self.classes_ = probe.classes_
        self.C_ = probe.C_
        self.val_score_ = probe.val_score_
        self.skipped_ = probe.skipped_
        self.model_ = probe.model_
        self.model_.info = {"strategy": "contrastive", "loss": self.loss,
                            "temperature": self.temperature, "epochs": epochs, "lr": self.lr,
                            "freeze": self.freeze, "head": self.head, "C": self.C_,
                            "seed": self.seed, "trainable_params": self.trainable_params_}
        self.n_features_in_ = bb.feature_dim
        self.fit_seconds_ = time.perf_counter() - t0
        return self
