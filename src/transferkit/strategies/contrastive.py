"""Few-shot contrastive transfer (SetFit-style): pull same-class examples together, then a head.

Stage 1 fine-tunes the encoder on pairs drawn from the few labels: every pair of examples in a
batch is a positive (same class) or a negative. ``loss="supcon"`` is the supervised contrastive
loss (each example against all others in the batch, temperature-scaled cosine similarities);
``loss="pairs"`` is SetFit's cosine-similarity regression (cos -> 1 for positives, 0 for
negatives). Stage 2 fits a shallow head on the fine-tuned embeddings (as ``probe``).

Works on any backbone (text or image): it only needs ``feature_module`` and the data layer.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from torch import nn

from transferkit.backbones import Backbone, FeatureCache, load_backbone
from transferkit.data.dataset import Dataset
from transferkit.strategies.base import ModelPredictMixin
from transferkit.strategies.probe import ProbeClassifier, _as_dataset, check_modality
from transferkit.train import ItemData, TrainConfig, Trainer, TrainModule

LOSSES = ("supcon", "pairs")


def auto_epochs(n: int, batch_size: int, target_steps: int = 100, max_epochs: int = 10) -> int:
    """Epochs giving about ``target_steps`` optimiser steps, between 1 and ``max_epochs``."""
    steps = max(1, math.ceil(n / batch_size))
    return int(min(max_epochs, max(1, math.ceil(target_steps / steps))))


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

    def training_step(self, batch: Any) -> dict[str, torch.Tensor]:
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


class ContrastiveClassifier(ModelPredictMixin, ClassifierMixin, BaseEstimator):
    """Few-shot: contrastive fine-tuning of the encoder on the labelled pairs, then a head.

    ``freeze``: leading backbone stages kept frozen (default 1: a text encoder's token
    embeddings). ``epochs=None`` picks about 100 optimiser steps (at most 10 epochs).
    ``head``/``C`` as in ``probe`` (logistic regression on the fine-tuned embeddings).
    ``group_by_length``: batches of texts of similar length (less padding); ``False``: random.
    """

    def __init__(self, backbone: str | Backbone = "minilm", loss: str = "supcon",
                 temperature: float = 0.07, epochs: int | None = None, lr: float = 5e-5,
                 batch_size: int = 32, weight_decay: float = 0.01, freeze: int = 1,
                 head: str = "logreg", C: float | str = "auto", schedule: str = "constant",
                 clip_grad_norm: float | None = None, precision: str = "auto",
                 group_by_length: bool = True,
                 checkpoint_dir: str | Path | None = None, resume: bool = False, seed: int = 0,
                 arch: str | None = None, skip_bad: bool = False,
                 cache: FeatureCache | bool | None = True, progress: Any = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.backbone = backbone
        self.loss = loss
        self.temperature = temperature
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.freeze = freeze
        self.head = head
        self.C = C
        self.schedule = schedule
        self.clip_grad_norm = clip_grad_norm
        self.precision = precision
        self.group_by_length = group_by_length
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.seed = seed
        self.arch = arch
        self.skip_bad = skip_bad
        self.cache = cache
        self.progress = progress
        self.log = log

    def fit(self, X: Dataset | Sequence[Any], y: Sequence[Any] | None = None,
            X_val: Dataset | Sequence[Any] | None = None,
            y_val: Sequence[Any] | None = None) -> ContrastiveClassifier:
        """Contrastive fine-tuning on X, then the head on X's new embeddings (val picks C)."""
        if self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r}: choose one of {', '.join(LOSSES)}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        t0 = time.perf_counter()
        train = _as_dataset(X, y, "X")
        if isinstance(self.backbone, Backbone):
            bb = copy.deepcopy(self.backbone)
        else:
            bb = load_backbone(self.backbone, arch=self.arch)
        check_modality(bb, train)
        stages = bb.stages()
        if not 0 <= self.freeze < max(1, len(stages)):
            raise ValueError(f"freeze={self.freeze}: {bb.name!r} has {len(stages)} stages; "
                             f"leave at least one to train (0..{len(stages) - 1})")
        for i, st in enumerate(stages):
            for p in st.parameters():
                p.requires_grad_(i >= self.freeze)
        counts = np.bincount(train.labels, minlength=len(train.class_names))
        if (counts[counts > 0] < 2).all():
            raise ValueError(f"{train.source}: contrastive training needs at least two examples "
                             f"of some class (positive pairs); every class has one")
        epochs = self.epochs or auto_epochs(len(train), self.batch_size)
        data = ItemData(bb, train.items, train.labels)
        frozen = [m for st in stages[: self.freeze] for m in st.modules]
        net = _FrozenEval(ContrastiveNet(bb.feature_module(), self.loss, self.temperature,
                                         self.weight_decay), frozen)
        cfg = TrainConfig(epochs=epochs, batch_size=self.batch_size, lr=self.lr,
                          weight_decay=self.weight_decay, schedule=self.schedule,
                          clip_grad_norm=self.clip_grad_norm, precision=self.precision,
                          group_by_length=self.group_by_length, seed=self.seed)
        trainer = Trainer(cfg, checkpoint_dir=self.checkpoint_dir, resume=self.resume,
                          progress=bool(self.progress) if self.progress is not None else None,
                          label="contrastive", log=self.log)
        res = trainer.fit(net, data, None, collate=data.collate, fingerprint={
            "stage": "contrastive", "loss": self.loss, "freeze": self.freeze,
            "classes": list(train.class_names), "n_train": len(train), "backbone": bb.spec()})
        net.to("cpu")
        for p in bb.model.parameters():
            p.requires_grad_(True)
        bb.model.eval()
        bb.invalidate()
        self.train_seconds_ = res.seconds
        self.history_ = [{"phase": "contrastive", **row} for row in res.history]
        self.epochs_ = epochs
        # stage 2: the head on the fine-tuned embeddings (fresh features: no stale cache)
        probe = ProbeClassifier(backbone=bb, head=self.head, C=self.C, cache=False,
                                skip_bad=self.skip_bad, seed=self.seed, progress=self.progress)
        probe.fit(train, X_val=None if X_val is None else _as_dataset(X_val, y_val, "X_val"))
        self.backbone_ = bb
        self.classes_ = probe.classes_
        self.C_ = probe.C_
        self.skipped_ = probe.skipped_
        self.trainable_params_ = sum(p.numel() for st in stages[self.freeze:]
                                     for p in st.parameters())
        self.model_ = probe.model_
        self.model_.info = {"strategy": "contrastive", "loss": self.loss,
                            "temperature": self.temperature, "epochs": epochs, "lr": self.lr,
                            "freeze": self.freeze, "head": self.head, "C": self.C_,
                            "seed": self.seed, "trainable_params": self.trainable_params_}
        self.n_features_in_ = bb.feature_dim
        self.fit_seconds_ = time.perf_counter() - t0
        return self


class _FrozenEval(TrainModule):
    """Wraps a TrainModule so that frozen modules stay in eval mode (dropout off, BN stats)."""

    def __init__(self, inner: TrainModule, frozen: Sequence[nn.Module]) -> None:
        super().__init__()
        self.inner = inner
        self.frozen = list(frozen)

    def train(self, mode: bool = True) -> _FrozenEval:
        super().train(mode)
        for m in self.frozen:
            m.eval()
        return self

    def param_groups(self) -> list[dict[str, Any]]:
        return self.inner.param_groups()

    def training_step(self, batch: Any) -> dict[str, torch.Tensor]:
        return self.inner.training_step(batch)
