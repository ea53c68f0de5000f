"""Prototypical networks: the backbone trained on N-way K-shot episodes of the training
classes, then deployed as an ordinary model whose head holds one prototype per class (the
mean embedding of its training items; cosine similarity, scaled)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from transferkit.backbones import Backbone
from transferkit.backbones.modality import IMAGE_BACKBONE
from transferkit.data.dataset import Dataset
from transferkit.fewshot.meta import ProtoNet
from transferkit.heads import Head
from transferkit.model import TransferModel
from transferkit.strategies.base import (
    GradientStrategy,
    check_modality,
)
from transferkit.strategies.train_params import ESTIMATOR
from transferkit.train import EpisodicPlan
from transferkit.train.trunk import Trunk, fresh_backbone


@dataclass(**ESTIMATOR)
class ProtoNetClassifier(GradientStrategy):
    """Episodic training of a backbone (Snell et al. 2017), scikit-learn estimator.

    Each epoch is ``episodes`` episodes of ``ways`` classes with ``shots`` support and
    ``queries`` query items per class, drawn from the training classes; the loss is the
    cross-entropy of the queries over the scaled cosine similarity to the support's class
    means. ``freeze`` leading stages stay frozen (default: all but the top two of a
    pretrained backbone). Validation (``X_val``, else a held-out ``holdout`` fraction) scores
    fixed episodes and picks the epoch. The fitted model's head holds the class means of all
    the training items, so it predicts, saves and exports like any model.
    """

    backbone: str | Backbone = IMAGE_BACKBONE
    ways: int = 5
    shots: int = 5
    queries: int = 10
    episodes: int = 100
    freeze: int | str | None = None
    image_size: int | None = None
    holdout: float = 0.2
    seed: int = 0
    arch: str | None = None
    skip_bad: bool = False
    cache: Any = True

    def check_params(self) -> None:
        """Episode shape and the shared training options."""
        super().check_params()
        EpisodicPlan(ways=self.ways, shots=self.shots, queries=self.queries,
                     episodes=self.episodes)  # raises naming a bad value

    def fit(self, X: Dataset | Sequence[Any], y: Sequence[Any] | None = None,
            X_val: Dataset | Sequence[Any] | None = None,
            y_val: Sequence[Any] | None = None) -> ProtoNetClassifier:
        """Episodic training on X's classes; the head holds their prototypes."""
        t0 = time.perf_counter()
        self.check_params()
        full, train, val = self._validation(X, y, X_val, y_val, "prototypical training")
        bb = fresh_backbone(self.backbone, arch=self.arch, image_size=self.image_size,
                            device=self.device, precision=self.precision)
        check_modality(bb, train)
        trunk = Trunk(bb, cache=self.cache, progress=self.progress, log=self.log)
        pretrained = bb.pretrained
        freeze = self.freeze if self.freeze is not None else (-2 if pretrained else 0)
        n_freeze = trunk.n_freeze(freeze, keep_one=True)
        self.skipped_: list[str] = []
        train = trunk.readable(train, skip_bad=self.skip_bad, skipped=self.skipped_)
        plan = EpisodicPlan("train", ways=self.ways, shots=self.shots, queries=self.queries,
                            episodes=self.episodes)
        plan.eligible(train.labels, train.class_names)  # an impossible episode: error now
        view = trunk.view(train, val, n_freeze, label="protonet")
        net = ProtoNet(view.module, ways=self.ways, shots=self.shots, queries=self.queries,
                       seed=self.seed)
        net.set_frozen_modules(view.frozen)
        lr = self.lr or (1e-4 if pretrained else 1e-3)
        res = self._trainer("protonet", epochs=self.epochs or 10, lr=lr, subdir="protonet",
                            patience=self.patience).fit(
            net, {"train": view.train}, view.val, plan=plan, fingerprint={
                "stage": "protonet", "n_freeze": n_freeze, "classes": list(train.class_names),
                "n_train": len(train), "backbone": bb.spec()})
        self.history_ = [{"phase": "protonet", **row} for row in res.history]
        self.best_epoch_ = res.best_epoch
        self.val_score_ = res.best_metric if view.val is not None else None
        self.train_seconds_ = res.seconds
        self.scale_ = float(net.log_scale.detach().exp())
        self.backbone_ = trunk.finish()
        self.classes_ = np.asarray(full.class_names)
        feats = self.backbone_.extract(full, cache=False).features
        protos = np.stack([feats[full.labels == c].mean(axis=0)
                           for c in range(len(self.classes_))])
        head = Head({"kind": "cosine", "in_dim": feats.shape[1],
                     "num_classes": len(self.classes_), "logit_scale": self.scale_})
        head.prototypes.copy_(torch.as_tensor(protos, dtype=torch.float32))
        self.model_ = TransferModel(self.backbone_, head.eval(), list(self.classes_), info={
            "strategy": "protonet", "ways": self.ways, "shots": self.shots,
            "queries": self.queries, "episodes": self.episodes, "freeze": n_freeze,
            "lr": lr, "seed": self.seed, "best_epoch": self.best_epoch_})
        self.n_features_in_ = self.backbone_.feature_dim
        self.fit_seconds_ = time.perf_counter() - t0
        return self
