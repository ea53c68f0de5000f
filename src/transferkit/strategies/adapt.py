"""Domain adaptation: a labelled source, an unlabelled target (and perhaps a few labelled
target items); the model must work on the target.

Methods (``method``, combinable with "+", e.g. ``"dann+self-train"``):

- ``source-only``: the source alone (the baseline every method is shown beside);
- ``dann`` (domain-adversarial), ``coral`` (Deep CORAL), ``mmd`` (multi-kernel MMD): one
  alignment loss between source and target features, its weight ramped with training
  progress;
- ``self-train``: confidence-thresholded pseudo-labels on the target; ``fixmatch`` (images):
  an EMA teacher's confident predictions on a weak view train a strong view;
- ``reweight``: source items weighted by how target-like they are (a domain classifier's
  density ratio), in the source loss and in any alignment loss;
- ``tradaboost`` (needs labelled target items): boosting on frozen features.

With every backbone stage frozen (``freeze="all"``), ``source-only``, ``coral`` (classic
CORAL: source features whitened and re-coloured with the target covariance) and
``reweight`` run on extracted features in seconds.

Nothing is chosen with target labels: the epoch is picked on held-out source data
(``select="source-val"``) or on the information-maximisation score of the target
predictions (``select="im"``); by default each method's declared choice (``im`` for
self-training, whose failures source validation cannot see; ``source-val`` otherwise). A
labelled target test set, when given, is only logged per epoch, so the report can put the
label-free choice beside the oracle's. The source-only model is trained with the same
budget (``baseline=True``, its epoch picked on source validation unless ``select`` says
otherwise); an adapted model whose source-validation accuracy falls more than
``guard_drop`` below it, or whose target predictions collapse onto few classes, or
(reweighting) whose importance weights are worth fewer source items than there are classes,
is flagged and replaced by the source-only model (on frozen features without the
source-validation rule: see :mod:`.adapt_frozen`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from transferkit.backbones import Backbone
from transferkit.backbones.modality import IMAGE_BACKBONE
from transferkit.data.augment import augment_transform
from transferkit.data.dataset import Dataset
from transferkit.data.images import channel_kind
from transferkit.errors import DataError
from transferkit.model import TransferModel
from transferkit.strategies.adapt_features import (
    density_ratio_weights,
)
from transferkit.strategies.adapt_frozen import FeaturePath
from transferkit.strategies.adapt_guard import Guard
from transferkit.strategies.adapt_methods import ADAPT_METHODS, SELECT, parse_method
from transferkit.strategies.adapt_net import AdaptNet
from transferkit.strategies.adapt_report import adaptation_summary, adaptation_table
from transferkit.strategies.base import (
    GradientStrategy,
    as_dataset,
    check_modality,
    require_labels,
)
from transferkit.strategies.finetune_net import as_head, new_head
from transferkit.strategies.train_params import ESTIMATOR
from transferkit.train import PairedPlan
from transferkit.train.data import Weighted
from transferkit.train.plan import mix
from transferkit.train.trunk import Trunk, fresh_backbone


@dataclass(**ESTIMATOR)
class DomainAdaptClassifier(Guard, FeaturePath, GradientStrategy):
    """Domain adaptation estimator (see the module docstring for the methods).

    ``fit(X, y, *, X_target, X_target_labeled=None, y_target_labeled=None,
    X_target_test=None, y_target_test=None)``: X/y the labelled source; ``X_target`` the
    unlabelled target (labels it may carry are dropped unread); ``X_target_labeled`` a few
    labelled target items, used for training; ``X_target_test`` a labelled target set that
    is only logged per epoch (never used to choose anything).

    ``freeze`` leading backbone stages (default: every stage but the top two of a
    pretrained backbone, none of a network trained from scratch; ``"all"``: the fast feature
    path). ``align_weight`` scales the alignment loss (ramped by DANN's schedule unless
    ``ramp=False``), ``threshold`` the pseudo-label confidence (default 0.95 for FixMatch,
    0.9 otherwise), ``self_train_weight`` its loss, ``diversity_weight`` a term keeping the
    target predictions spread over the classes (SHOT's diversity: without it self-training
    collapsed onto one class on the digits benchmark, 0.096; with it 0.234, seed 0).
    ``select``: ``source-val``, ``im`` or None (the method's declared choice).
    ``holdout``: the fraction of the source held out for selection when no ``X_val`` is
    given. ``baseline``: also train the source-only model with the same budget, for the
    report and the collapse guard (``guard_drop``: the largest allowed fall in
    source-validation accuracy). The shared training parameters (epochs, lr, batch size...)
    are those of :class:`~transferkit.strategies.base.GradientStrategy`.
    """

    backbone: str | Backbone = IMAGE_BACKBONE
    method: str = "dann"
    freeze: int | str | None = None
    image_size: int | None = None
    align_weight: float = 1.0
    ramp: bool = True
    threshold: float | None = None
    self_train_weight: float = 1.0
    diversity_weight: float = 1.0
    ema_decay: float = 0.99
    weak_augment: str = "shift"
    strong_augment: str = "randaugment"
    augment: str = "none"
    dropout: float = 0.0
    head_lr: float | None = None
    select: str | None = None
    holdout: float = 0.2
    baseline: bool = True
    guard_drop: float = 0.05
    boost_rounds: int = 20
    seed: int = 0
    arch: str | None = None
    skip_bad: bool = False
    cache: Any = True

    # --- checks ------------------------------------------------------------------------------
    def check_params(self) -> None:
        """Every option, before any data is read (a ValueError names the bad one)."""
        super().check_params()
        parse_method(self.method)
        if self.select is not None and self.select not in SELECT:
            raise ValueError(f"--select {self.select!r}: choose {' or '.join(SELECT)}")
        for name in ("augment", "weak_augment", "strong_augment"):
            augment_transform(getattr(self, name))
        for name in ("align_weight", "self_train_weight", "diversity_weight", "guard_drop",
                     "dropout"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.threshold is not None and not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.holdout < 1.0:
            raise ValueError(f"holdout must be in [0, 1), got {self.holdout}")

    # --- fitting -------------------------------------------------------------------------------
    def fit(self, X: Dataset | Sequence[Any], y: Sequence[Any] | None = None,
            X_val: Dataset | Sequence[Any] | None = None,
            y_val: Sequence[Any] | None = None, *,
            X_target: Dataset | Sequence[Any] | None = None,
            X_target_labeled: Dataset | Sequence[Any] | None = None,
            y_target_labeled: Sequence[Any] | None = None,
            X_target_test: Dataset | Sequence[Any] | None = None,
            y_target_test: Sequence[Any] | None = None) -> DomainAdaptClassifier:
        """Adapt from the labelled source X to the unlabelled ``X_target``."""
        t0 = time.perf_counter()
        self.check_params()
        how = parse_method(self.method)
        self.select_ = how["select"] = self.select or how["select"]
        _, source, val = self._validation(X, y, X_val, y_val, "domain adaptation (the source)")
        names = list(source.class_names)
        target, labeled, test = self._targets(source, how, X_target, X_target_labeled,
                                              y_target_labeled, X_target_test, y_target_test)
        self.notes_: list[str] = _channel_notes(source, target)
        for note in self.notes_:
            self._say(f"note: {note}")
        self.classes_ = np.asarray(names)
        bb0 = fresh_backbone(self.backbone, arch=self.arch, image_size=self.image_size,
                            device=self.device, precision=self.precision)
        for ds in (source, target):
            check_modality(bb0, ds)
        images = [p for p in how["parts"] if ADAPT_METHODS[p].images_only]
        if images and bb0.modality != "image":
            raise ValueError(f"{images[0]} needs images (weak and strong augmented views); "
                             f"use self-train for text")
        self.skipped_: list[str] = []
        trunk0 = Trunk(bb0, cache=self.cache, log=self.log)
        source = trunk0.readable(source, skip_bad=self.skip_bad, skipped=self.skipped_)
        target = trunk0.readable(target, skip_bad=self.skip_bad, skipped=self.skipped_)
        pretrained = bb0.pretrained
        freeze = self.freeze if self.freeze is not None else (-2 if pretrained else 0)
        n_freeze = trunk0.n_freeze(freeze) if bb0.stages() else 0
        all_frozen = (not bb0.stages() or n_freeze == len(trunk0.stages)
                      or not all(ADAPT_METHODS[p].network for p in how["parts"]))
        data = {"source": source, "val": val, "target": target, "labeled": labeled,
                "test": test}
        self.history_: list[dict[str, Any]] = []
        self.baseline_: dict[str, Any] | None = None
        self.advice_: str | None = None
        if all_frozen:
            self._fit_features(bb0, how, data)
        else:
            self._fit_network(how, data, n_freeze, pretrained)
        self.n_features_in_ = self.model_.backbone.feature_dim
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _targets(self, source: Dataset, how: dict[str, Any], X_target: Any,
                 X_target_labeled: Any, y_target_labeled: Any, X_target_test: Any,
                 y_target_test: Any) -> tuple[Dataset, Dataset | None, Dataset | None]:
        """The unlabelled target (its labels dropped unread), the labelled target items and
        the target test set, checked against the source."""
        names = list(source.class_names)
        if X_target is None:
            raise DataError("domain adaptation needs unlabelled target data (X_target, or "
                            "TARGET on the command line)")
        target = as_dataset(X_target, None, "X_target")
        target = replace(target, labels=None, domain="target")  # labels are never read
        if len(target) == 0:
            raise DataError(f"{target.source}: the target data is empty")
        labeled = None
        if X_target_labeled is not None:
            labeled = require_labels(as_dataset(X_target_labeled, y_target_labeled,
                                                "X_target_labeled"), "--target-labeled")
            labeled = labeled.align_classes(names)
        needs = [p for p in how["parts"] if ADAPT_METHODS[p].needs_target_labels]
        if needs and labeled is None:
            raise DataError(f"{needs[0]} needs a few labelled target items (X_target_labeled, "
                            f"--target-labeled)")
        test = None
        if X_target_test is not None:
            test = require_labels(as_dataset(X_target_test, y_target_test, "X_target_test"),
                                  "--target-test").align_classes(names)
        for ds in (target, labeled, test):
            if ds is not None and ds.modality != source.modality:
                raise DataError(f"{ds.source}: {ds.modality} data, but the source "
                                f"({source.source}) is {source.modality} data; source and "
                                f"target must be of one modality")
        return target, labeled, test

    def _say(self, line: str) -> None:
        if self.log is not None:
            self.log(line)

    # --- the network path ------------------------------------------------------------------
    def _fit_network(self, how: dict[str, Any], data: dict[str, Any], n_freeze: int,
                     pretrained: bool) -> None:
        epochs = self.epochs or 30
        # from scratch: 3e-3, picked on source validation on the digits benchmark (0.996 vs
        # 0.995 / 0.984 for 1e-3 / 1e-2); re-measured 2026-12-05 it ties with 1e-3 (0.994 vs
        # 0.995: 2 of 1,077 validation items apart): kept (results/adapt_digits_screen.md)
        lr = self.lr or (5e-4 if pretrained else 3e-3)
        head_lr = self.head_lr or (lr * 10 if pretrained else lr)
        weights = None
        if not how["source_only"] and self.baseline:
            self._say(f"source-only model, the same budget ({epochs} epochs), for comparison")
            base = self._phase({"align": None, "self_train": None,
                                "select": self.select or "source-val"}, data, n_freeze,
                               epochs, lr, head_lr, None, "source-only")
            self.baseline_ = base
        if how["reweight"]:
            feats_bb = (self.baseline_["backbone"] if self.baseline_ is not None
                        else fresh_backbone(self.backbone, arch=self.arch,
                                            image_size=self.image_size,
                                            device=self.device, precision=self.precision))
            weights = self._density_weights(feats_bb, data["source"], data["target"])
        label = self.method if not how["source_only"] else "source-only"
        early = [] if weights is None or self.baseline_ is None else \
            self._weight_flags(self.weight_info_)
        if early:  # known before training: the weighted model would be refused anyway
            self._say(f"{self.method} not trained: {'; '.join(early)}")
            run = {**self.baseline_, "trained": False}
        else:
            run = self._phase(how, data, n_freeze, epochs, lr, head_lr, weights, label)
        if weights is not None:
            run["weight_info"] = self.weight_info_
        self.history_ = run["history"]
        self.flags_ = early or ([] if self.baseline_ is None
                                else self._guard(run, self.baseline_))
        chosen = run
        if self.flags_:
            assert self.baseline_ is not None
            chosen = self.baseline_
            self.advice_ = (f"{self.method} was flagged ({'; '.join(self.flags_)}): the model "
                            f"is the source-only one trained with the same budget")
            self._say(self.advice_)
        self.kept_ = "source-only" if chosen is not run else label
        self.backbone_ = chosen["backbone"]
        self.best_epoch_ = chosen["best_epoch"]
        self.val_score_ = chosen["row"].get("source_val_accuracy")
        self.target_scores_ = {k: chosen["row"].get(k) for k in
                               ("target_im", "target_entropy", "target_diversity")}
        self.model_ = TransferModel(self.backbone_, as_head(chosen["head"]),
                                    list(self.classes_), info={
                                        "strategy": "adapt", "method": self.method,
                                        "kept": self.kept_, "select": self.select_,
                                        "freeze": n_freeze, "epochs": epochs, "lr": lr,
                                        "head_lr": head_lr, "seed": self.seed,
                                        "best_epoch": self.best_epoch_})
        self.summary_ = adaptation_summary(self, run)
        self.report_tables_ = [adaptation_table(self, run)]

    def _phase(self, how: dict[str, Any], data: dict[str, Any], n_freeze: int, epochs: int,
               lr: float, head_lr: float, weights: np.ndarray | None,
               label: str) -> dict[str, Any]:
        """Train one model (trunk + new head) with ``how``'s losses; its best epoch's row."""
        bb = fresh_backbone(self.backbone, arch=self.arch, image_size=self.image_size,
                            device=self.device, precision=self.precision)
        trunk = Trunk(bb, cache=self.cache, progress=self.progress, log=self.log)
        fixmatch = how.get("self_train") == "fixmatch"
        augment = {"source": self.augment}
        if fixmatch:
            augment["target"] = (self.weak_augment, self.strong_augment)
        view = trunk.views({"source": data["source"], "target": data["target"],
                            "target_labeled": data.get("labeled"), "source_val": data["val"],
                            "target_eval": data["target"] if fixmatch else None,
                            "target_test": data.get("test")}, n_freeze, augment=augment,
                           label=label)
        s = view.streams
        with torch.random.fork_rng(devices=[]):  # the domain classifier's init: seeded
            torch.manual_seed(mix(self.seed, "align") % 2**63)
            align = (ADAPT_METHODS[how["align"]].build_loss(bb.feature_dim)
                     if how["align"] else None)
        threshold = self.threshold or (0.95 if fixmatch else 0.9)
        head = new_head(bb.feature_dim, len(self.classes_), self.seed)
        net = AdaptNet(view, head, align=align, align_weight=self.align_weight,
                       ramp=self.ramp, self_train=how.get("self_train"), threshold=threshold,
                       self_train_weight=self.self_train_weight, ema_decay=self.ema_decay,
                       diversity_weight=self.diversity_weight,
                       dropout=self.dropout, head_lr_scale=head_lr / lr,
                       weight_decay=self.weight_decay)
        train = {"source": s["source"] if weights is None else Weighted(s["source"], weights),
                 "target": s["target"]}
        if "target_labeled" in s:
            train["target_labeled"] = s["target_labeled"]
        val = {"target": s.get("target_eval", s["target"])}
        if "source_val" in s:
            val["source"] = s["source_val"]
        if "target_test" in s:
            val["target_test"] = s["target_test"]
        monitor, mode = self._monitor(how["select"], "source" in val)
        plan = PairedPlan("source", "target", length="source",
                          extra=("target_labeled",) if "target_labeled" in train else ())
        trainer = self._trainer(label, epochs=epochs, lr=lr, subdir=label.replace("+", "-"),
                                monitor=monitor, mode=mode)
        res = trainer.fit(net, train, val, plan=plan, fingerprint={
            "stage": label, "method": self.method, "n_freeze": n_freeze,
            "classes": list(self.classes_), "n_source": len(data["source"]),
            "n_target": len(data["target"]), "backbone": bb.spec(),
            "weights": None if weights is None else float(np.asarray(weights).sum())})
        history = [{"phase": label, **row} for row in res.history]
        row = next((r for r in history if r["epoch"] == res.best_epoch), history[-1])
        row["kept"] = True
        return {"backbone": trunk.finish(), "head": head, "history": history, "row": row,
                "best_epoch": res.best_epoch, "seconds": res.seconds, "label": label}

    def _density_weights(self, bb: Backbone, source: Dataset, target: Dataset) -> np.ndarray:
        fs = bb.extract(source, cache=self.cache).features
        ft = bb.extract(target, cache=self.cache).features
        w, info = density_ratio_weights(fs, ft, seed=self.seed)
        self.weights_ = w
        self.weight_info_ = info
        self._say(f"reweight: a domain classifier tells source from target with held-out "
                  f"accuracy {info['domain_classifier_accuracy']:.3f}; source weights "
                  f"{w.min():.2f}..{w.max():.2f} (effective sample share "
                  f"{info['effective_sample_share']:.2f})")
        return w

    def _progress(self) -> Any:
        return self.progress if callable(self.progress) else None


def _channel_notes(source: Dataset, target: Dataset) -> list[str]:
    """A note when source and target images differ in colour format (grey vs colour)."""
    if source.modality != "image":
        return []
    kinds = {name: {channel_kind(it) for it in ds.items[:20]} - {None}
             for name, ds in (("source", source), ("target", target))}
    if not (kinds["source"] and kinds["target"] and kinds["source"] != kinds["target"]):
        return []
    return [f"the source images are {'/'.join(sorted(kinds['source']))} and the target "
            f"images {'/'.join(sorted(kinds['target']))}: both are read as RGB (3 channels), "
            f"so the model sees one input format; the difference is part of the shift to "
            f"adapt to"]
