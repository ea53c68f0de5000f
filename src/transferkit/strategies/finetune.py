"""Fine-tuning: a new head on a pretrained (or random) backbone, trained by the one Trainer.

Layer transfer (``freeze``: the first N stages are copied and frozen), a two-stage recipe
(head first, then unfreeze) with layer-wise learning-rate decay, conservative training
(L2-SP towards the pretrained weights; LwF-style feature preservation), augmentation and
LoRA adapters. Freezing, BatchNorm policy, LoRA and the frozen-prefix activation cache come
from the shared :class:`~transferkit.train.trunk.Trunk`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from transferkit.backbones import Backbone
from transferkit.backbones.modality import IMAGE_BACKBONE
from transferkit.data.augment import AUGMENT_PRESETS, augment_transform
from transferkit.data.dataset import Dataset
from transferkit.heads import fit_head
from transferkit.model import TransferModel
from transferkit.strategies import recipes
from transferkit.strategies.base import (
    GradientStrategy,
    auto_epochs,
    check_modality,
)
from transferkit.strategies.finetune_after import AfterFineTuning
from transferkit.strategies.finetune_net import FineTuneNet, as_head, new_head
from transferkit.strategies.train_params import ESTIMATOR
from transferkit.strategies.wise import choose_alpha, mix, parse_wise, snapshot
from transferkit.train.trunk import Trunk, fresh_backbone


@dataclass(**ESTIMATOR)
class FineTuneClassifier(AfterFineTuning, GradientStrategy):
    """Fine-tune a backbone with a new linear head (scikit-learn estimator).

    Defaults come from a measured recipe (:mod:`transferkit.strategies.recipes`): for a
    pretrained image backbone, the head alone for 3 epochs, then the top 2 stages at lr 5e-4
    with the pretrained BatchNorm statistics, up to 15 epochs with early stopping, the epoch
    picked on validation data; for a text encoder, the head starts as the linear probe
    (LP-FT) and the top 2 blocks train at lr 1e-4. Any option given explicitly overrides the
    recipe's value, and ``recipe_`` says in one line what was used. The fine-tuning phase
    scores its starting point too (epoch 0: the head trained alone, or the probe), so the
    backbone is only changed when that beats it on validation data; otherwise ``advice_``
    says so. Without validation data a seeded stratified ``holdout`` fraction (default 0.2;
    0 with LoRA adapters, whose recipe needs no validation: see ``LoRAClassifier``) of the
    training data picks the epoch (classes with fewer than 5 items stay whole in training);
    when the probe wins it is refitted on all the training data; ``refit=True`` (the image
    recipe's default: measured never to lose to the probe) also trains a winning fine-tuned
    model again on all the data for the epochs picked, ``"auto"`` (text) does not, ``False``
    keeps every model trained on the rest. ``wise``: after fine-tuning, keep a weight-space
    mix of the fine-tuned model and the one its fine-tuning phase started from (WiSE-FT;
    ``alpha`` the fine-tuned share, ``"auto"`` picks it on the validation data; see
    :mod:`transferkit.strategies.wise`).

    ``freeze``: number of leading backbone stages kept frozen (0 = full fine-tuning, -k =
    all but the last k, ``"all"`` = feature extraction trained through the same loop).
    ``head_epochs`` > 0 first trains the head alone with the whole body frozen, then
    unfreezes (two-stage recipe). ``lr`` is the backbone's learning rate; ``head_lr``
    defaults to 10x ``lr`` on pretrained weights without a head phase.
    After a head phase the head is already trained: unless ``head_lr`` is given it continues at
    ``lr``, and ``warmup_epochs`` (default: 1 after a head phase, else 0) ramps the unfrozen
    body up (restarting at 10x lr with no warm-up lost 2.4 points in the ladder benchmark).
    ``layer_decay`` < 1 gives each lower stage that factor of the stage above's lr.
    ``l2sp`` = alpha of the L2-SP penalty (alpha/2 * ||w - w_pretrained||^2); ``lwf`` = weight
    of the penalty keeping features close to the pretrained network's (the pretrained copy
    runs in the same train/eval mode, so the penalty starts at zero).
    ``train_bn=False`` keeps every BatchNorm on its pretrained statistics (Keras-style); with
    ``True`` the trainable stages' statistics adapt to the new data, which moves the features
    more than any weight penalty can hold back.
    ``augment``: none|light|strong (training data only). ``image_size`` resizes inputs (e.g. 128
    to fine-tune faster on CPU). ``lora_r`` > 0: parameter-efficient fine-tuning (LoRA via
    ``peft``): the backbone's weights stay frozen, rank-``lora_r`` adapters on
    ``lora_targets`` (default: the attention query and value projections of a text encoder)
    train with the head, and are merged into the weights at the end (the saved model is a
    plain backbone + head). The shared training parameters (``batch_size``, ``optimizer``,
    ``schedule``, ``patience``, checkpoints, ...) are those of
    :class:`~transferkit.strategies.base.GradientStrategy`.
    """

    backbone: str | Backbone = IMAGE_BACKBONE
    freeze: int | str | None = None
    head_lr: float | None = None
    layer_decay: float = 1.0
    head_epochs: int | None = None
    l2sp: float = 0.0
    lwf: float = 0.0
    dropout: float = 0.0
    augment: str | None = None
    image_size: int | None = None
    class_weight: str | Sequence[float] | None = None
    label_smoothing: float = 0.0
    train_bn: bool | None = None
    cache_prefix: bool = True
    lora_r: int = 0
    lora_alpha: float | None = None
    lora_dropout: float = 0.1
    lora_targets: str | Sequence[str] | None = None
    head_init: str | None = None
    fallback: str | None = None
    freeze_last: int = 0
    holdout: float | None = None
    refit: bool | str | None = None
    wise: float | str | None = None
    seed: int = 0
    arch: str | None = None
    skip_bad: bool = False
    cache: Any = True

    # --- fitting --------------------------------------------------------------------------
    def fit(self, X: Dataset | Sequence[Any], y: Sequence[Any] | None = None,
            X_val: Dataset | Sequence[Any] | None = None,
            y_val: Sequence[Any] | None = None) -> FineTuneClassifier:
        """Train on X (validation data, if given, picks the best epoch and early-stops)."""
        t0 = time.perf_counter()
        self.check_params()
        full, train, val = self._validation(X, y, X_val, y_val, "fine-tuning")
        bb = fresh_backbone(self.backbone, arch=self.arch, image_size=self.image_size,
                            device=self.device, precision=self.precision)
        if not bb.stages():
            raise ValueError(f"backbone {bb.name!r} has no trainable stages; use the probe "
                             f"strategy for it")
        check_modality(bb, train)
        recipe, cfg, overridden = self._recipe(bb, validated=val is not None)
        trunk, n_freeze = self._trunk(bb, recipe, cfg, overridden)
        self.classes_ = np.asarray(train.class_names)
        k = len(self.classes_)
        stages = trunk.stages
        self.skipped_: list[str] = []
        train = trunk.readable(train, skip_bad=self.skip_bad, skipped=self.skipped_)
        if val is not None:
            val = trunk.readable(val, skip_bad=self.skip_bad, skipped=self.skipped_)
        self.train_origins_ = list(train.origins)
        lr = cfg["lr"] if n_freeze < len(stages) or self.lr is not None else 1e-3
        two_stage = bool(cfg["head_epochs"]) and n_freeze < len(stages)
        head_lr = self.head_lr if self.head_lr is not None else (
            lr * 10 if bb.pretrained and n_freeze < len(stages) and not two_stage else lr)
        probe_init = cfg["head_init"] == "probe" and n_freeze < len(stages)
        if probe_init:  # linear probe, then fine-tune (LP-FT): the head starts where the
            head = self._probe_head(bb, train)  # probe ends, so the features are not
            two_stage = False                   # wrecked by a random head's gradients
            head_lr = self.head_lr if self.head_lr is not None else lr
        else:
            head = new_head(bb.feature_dim, k, self.seed)
        cw = self._class_weights(train.labels, k)
        self.history_: list[dict[str, Any]] = []
        self.train_seconds_ = 0.0
        warmup = self.warmup_epochs if self.warmup_epochs is not None else (
            1.0 if two_stage or probe_init else 0.0)
        if two_stage:
            first_lr = self.head_lr if self.head_lr is not None else lr * 10
            self._train_stage(trunk, train, val, head, cw, n_freeze=len(stages),
                              epochs=int(cfg["head_epochs"]), lr=first_lr, head_lr=first_lr,
                              warmup=0.0, subdir="stage1-head", label="head", augment="none",
                              penalties=False, patience=None)
        epochs = (cfg["epochs"] if cfg["epochs"] is not None
                  else auto_epochs(len(train), self.batch_size, 100, 20))
        self._train_stage(trunk, train, val, head, cw, n_freeze=n_freeze, epochs=int(epochs),
                          lr=lr, head_lr=head_lr, warmup=warmup, subdir="train",
                          label="fine-tune" if n_freeze < len(stages) else "head",
                          augment=cfg["augment"], penalties=True, patience=cfg["patience"],
                          eval_start=probe_init or two_stage,
                          wise=cfg.get("wise") if n_freeze < len(stages) else None)
        self.lr_, self.head_lr_ = lr, head_lr
        self._model(trunk, head, n_freeze, recipe.name, {
            **cfg, "epochs": epochs, "lr": lr, "head_lr": head_lr})
        self._after_fit(train, val, full if X_val is None and val is not None else None,
                        fallback=cfg["fallback"], refit=cfg["refit"], probe_init=probe_init)
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _holdout_fraction(self) -> float:
        """``holdout`` when given; else 0.2, or 0 with LoRA (its recipe trains about 100
        steps and keeps the last: a holdout only costs it training data)."""
        if self.holdout is not None:
            return float(self.holdout)
        return 0.0 if self.lora_r else 0.2

    def _recipe(self, bb: Backbone, *, validated: bool) -> tuple[Any, dict[str, Any], Any]:
        """The recipe for this backbone, its settings with the options given on top, and
        which of them were given (``validated``: whether there is validation data)."""
        recipe = recipes.pick(bb.modality, bb.pretrained, bool(self.lora_r))
        cfg, overridden = recipes.resolve(recipe, {
            "freeze": self.freeze, "head_epochs": self.head_epochs, "lr": self.lr,
            "train_bn": self.train_bn, "epochs": self.epochs, "patience": self.patience,
            "augment": self.augment, "head_init": self.head_init, "fallback": self.fallback,
            "refit": self.refit, "wise": parse_wise(self.wise)})
        if cfg.get("wise") == "auto" and not validated:
            raise ValueError("wise='auto' picks the mixing weight on validation data: give "
                             "validation data or holdout > 0, or a fixed weight in (0, 1]")
        return recipe, cfg, overridden

    def _trunk(self, bb: Backbone, recipe: Any, cfg: dict[str, Any],
               overridden: Any) -> tuple[Trunk, int]:
        """The shared trunk with ``cfg``'s frozen stages (and LoRA adapters), and how many
        stages are frozen; the recipe said in the log."""
        trunk = Trunk(bb, train_bn=cfg["train_bn"], cache_prefix=self.cache_prefix,
                      cache=self.cache, progress=self.progress, log=self.log)
        n_freeze = trunk.n_freeze(cfg["freeze"])
        if self.freeze_last:
            trunk.freeze_last(int(self.freeze_last), n_freeze)
        self.refit_ = cfg["refit"]
        self.recipe_ = recipes.describe(recipe, {**cfg, "freeze_last": self.freeze_last},
                                        overridden, len(trunk.stages), n_freeze)
        if self.log is not None:
            self.log(self.recipe_)
        if self.lora_r:
            if n_freeze:
                raise ValueError("LoRA trains adapters on every stage; use freeze=0 with lora_r")
            trunk.add_lora(self.lora_r, self.lora_alpha, self.lora_dropout, self.lora_targets,
                           self.seed)
        return trunk, n_freeze

    def _model(self, trunk: Trunk, head: nn.Linear, n_freeze: int, recipe: str,
               cfg: dict[str, Any]) -> None:
        """The fitted model (the trunk's backbone and the head) and its facts."""
        self.prefix_seconds_ = trunk.prefix_seconds
        self.trainable_params_ = (trunk.trainable_params(n_freeze)
                                  + sum(p.numel() for p in head.parameters()))
        stages = len(trunk.stages)
        self.backbone_ = trunk.finish()
        self.n_frozen_stages_ = n_freeze
        self.model_ = TransferModel(self.backbone_, as_head(head), list(self.classes_), info={
            "strategy": "finetune", "recipe": recipe, "freeze": n_freeze, "stages": stages,
            "epochs": cfg["epochs"], "head_epochs": cfg["head_epochs"], "lr": cfg["lr"],
            "head_lr": cfg["head_lr"], "augment": cfg["augment"], "l2sp": self.l2sp,
            "lwf": self.lwf, "dropout": self.dropout, "train_bn": cfg["train_bn"],
            "seed": self.seed, "lora_r": self.lora_r, "wise": self.wise_alpha_,
            "trainable_params": self.trainable_params_})
        self.n_features_in_ = self.backbone_.feature_dim

    def _train_stage(self, trunk: Trunk, train: Dataset, val: Dataset | None,
                     head: nn.Linear, cw: torch.Tensor | None, *, n_freeze: int, epochs: int,
                     lr: float, head_lr: float, warmup: float, subdir: str, label: str,
                     augment: str, penalties: bool, patience: int | None,
                     eval_start: bool = False, wise: float | str | None = None) -> None:
        view = trunk.view(train, val, n_freeze, augment=augment, adapters=penalties,
                          label=label)
        fine = penalties and n_freeze < len(trunk.stages)
        net = FineTuneNet(view, head, dropout=self.dropout, class_weight=cw,
                          label_smoothing=self.label_smoothing,
                          l2sp=self.l2sp if fine else 0.0, lwf=self.lwf if fine else 0.0,
                          head_lr_scale=head_lr / lr, layer_decay=self.layer_decay,
                          weight_decay=self.weight_decay)
        trainer = self._trainer(label, epochs=epochs, lr=lr, warmup=warmup, subdir=subdir,
                                patience=patience, eval_start=eval_start)
        start = snapshot(net) if wise is not None else None
        self.wise_alpha_: float | None = None
        self.wise_scores_: list[dict[str, float]] = []
        res = trainer.fit(net, view.train, view.val, fingerprint={
            "stage": label, "n_freeze": n_freeze, "classes": list(self.classes_),
            "n_train": len(train), "augment": augment, "backbone": trunk.backbone.spec()})
        rows = [{"phase": label, **row} for row in res.history]
        if penalties and res.best_epoch is not None:  # the last phase: its best epoch is kept
            next(r for r in rows if r["epoch"] == res.best_epoch)["kept"] = True
        self.history_ += rows
        self.train_seconds_ += res.seconds
        self.best_epoch_ = res.best_epoch
        self.samples_per_second_ = res.samples_per_second
        # validation accuracy of the kept epoch (the Trainer monitors val_accuracy)
        self.val_score_: float | None = res.best_metric if view.val is not None else None
        if start is not None and res.best_epoch != 0:  # epoch 0 kept: nothing to mix
            self._wise(net, start, wise, lambda: trainer.evaluate(net, view.val))

    def _wise(self, net: FineTuneNet, start: dict[str, torch.Tensor], wise: float | str,
              evaluate: Callable[[], dict[str, float]]) -> None:
        """Replace the fine-tuned weights by their mix with ``start`` (WiSE-FT), the weight
        picked on the validation data when ``wise`` is "auto"."""
        if wise == "auto":
            self.wise_alpha_, self.wise_scores_ = choose_alpha(net, start, evaluate)
            self.val_score_ = next(r["val_accuracy"] for r in self.wise_scores_
                                   if r["alpha"] == self.wise_alpha_)
        else:
            self.wise_alpha_ = float(wise)
            net.load_state_dict(mix(start, snapshot(net), self.wise_alpha_))
        if self.log is not None:
            scores = ", ".join(f"{r['alpha']:g}: {r['val_accuracy']:.3f}"
                               for r in self.wise_scores_)
            self.log(f"WiSE-FT: kept {self.wise_alpha_:g} of the fine-tuned weights"
                     + (f" (validation accuracy by weight: {scores})" if scores else ""))

    def _probe_head(self, bb: Backbone, train: Dataset) -> nn.Linear:
        """A linear head fitted as the probe would be (logistic regression on the frozen
        backbone's features, C by cross-validation), as logits of the raw features."""
        from transferkit.strategies.probe import ProbeClassifier

        probe = ProbeClassifier(backbone=bb, cache=self.cache, seed=self.seed,
                                progress=self.progress if callable(self.progress) else None)
        probe.fit(train)  # C by cross-validation, on features from the cache
        feats = probe.transform(train)
        # refit at that C with the feature scales floored at their median: the probe's own
        # standardisation divides nearly constant features by ~1e-5, and fine-tuning that
        # moves them a little would then swing the logits by thousands
        floor = float(np.median(probe.model_.head.scale.numpy()))
        fitted = fit_head(feats, train.labels, len(self.classes_), "logreg", C=probe.C_,
                          seed=self.seed, min_scale=floor)
        linear = nn.Linear(bb.feature_dim, len(self.classes_))
        with torch.no_grad():  # softmax(W (x - mean) / scale + b) == softmax(W' x + b')
            w = fitted.body.weight / fitted.scale
            linear.weight.copy_(w)
            linear.bias.copy_(fitted.body.bias - w @ fitted.mean)
        self.probe_C_ = probe.C_
        return linear

    # --- helpers ------------------------------------------------------------------------
    def check_params(self) -> None:
        """Every option, before any data is read (a ValueError names the bad one)."""
        super().check_params()
        if self.augment is not None and self.augment not in AUGMENT_PRESETS:
            augment_transform(self.augment)  # raises with the list of presets
        for name in ("l2sp", "lwf", "label_smoothing", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.layer_decay <= 1.0:
            raise ValueError(f"layer_decay must be in (0, 1], got {self.layer_decay}")
        if self.head_epochs is not None and self.head_epochs < 0:
            raise ValueError(f"head_epochs must be >= 0, got {self.head_epochs}")
        if self.lora_r < 0:
            raise ValueError(f"lora_r must be >= 0, got {self.lora_r}")
        if self.head_init not in (None, "probe", "random"):
            raise ValueError(f"head_init {self.head_init!r}: choose probe or random")
        if self.image_size is not None and int(self.image_size) < 8:
            raise ValueError(f"--image-size must be at least 8 pixels, got {self.image_size}")
        if isinstance(self.freeze, str) and self.freeze != "all" and not \
                self.freeze.lstrip("-").isdigit():
            raise ValueError(f"--freeze {self.freeze!r}: give a number of stages or 'all'")
        if self.fallback not in (None, "probe", "none"):
            raise ValueError(f"fallback {self.fallback!r}: choose probe or none")
        parse_wise(self.wise)
        if self.refit not in (None, True, False, "auto"):
            raise ValueError(f"refit {self.refit!r}: choose auto, True or False")
        if isinstance(self.class_weight, str) and self.class_weight != "balanced":
            raise ValueError(f"class_weight {self.class_weight!r}: use 'balanced' or one "
                             f"weight per class")

    def _class_weights(self, labels: np.ndarray, k: int) -> torch.Tensor | None:
        cw = self.class_weight
        if cw is None:
            return None
        if isinstance(cw, str):
            counts = np.bincount(labels, minlength=k).astype(np.float64)
            w = np.where(counts > 0, len(labels) / (k * np.maximum(counts, 1)), 0.0)
            return torch.as_tensor(w, dtype=torch.float32)
        w = np.asarray(cw, dtype=np.float32)
        if w.shape != (k,):
            raise ValueError(f"class_weight has {w.size} values; {k} classes need {k}")
        return torch.as_tensor(w)


@dataclass(**ESTIMATOR)
class LoRAClassifier(FineTuneClassifier):
    """Parameter-efficient fine-tuning: ``FineTuneClassifier`` with ``lora_r=8`` adapters on
    a ``minilm`` backbone, batch size 16 and ``epochs=None`` (about 100 optimiser steps, at
    most 20 epochs). Without validation data it trains on all the data and keeps the last
    epoch (``holdout=0``): on development glosses a 20% holdout picking the epoch cost 4.2
    points at 8 labels per class and 0.8 at 64 (0.765 / 0.853 vs 0.807 / 0.860, every seed
    lower); training again on all the data after the holdout recovered part of it at 8
    (0.783) and none at 64 (0.851; ``benchmarks/results/lora_refit_dev.md``)."""

    backbone: str | Backbone = "minilm"
    lora_r: int = 8
    batch_size: int = 16
    holdout: float = 0.0
