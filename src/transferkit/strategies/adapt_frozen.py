"""The frozen-feature path of domain adaptation: every backbone stage frozen, the methods
that declare this path (source-only, CORAL's re-colouring, reweighting, TrAdaBoost) run on
extracted features in seconds."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from transferkit.backbones import Backbone
from transferkit.data.dataset import Dataset
from transferkit.heads import fit_head
from transferkit.model import TransferModel
from transferkit.selection import (
    information_maximization,
    prediction_diversity,
    prediction_entropy,
)
from transferkit.strategies.adapt_features import TrAdaBoost, density_ratio_weights
from transferkit.strategies.adapt_methods import ADAPT_METHODS, check_path


class FeaturePath:
    """The frozen-feature path of :class:`~transferkit.strategies.adapt.DomainAdaptClassifier`
    (its parameters and fitted attributes)."""

    method: str
    seed: int
    cache: Any
    boost_rounds: int
    classes_: np.ndarray

    def _fit_features(self, bb: Backbone, how: dict[str, Any], data: dict[str, Any]) -> None:
        """source-only / coral / reweight / tradaboost on frozen features."""
        check_path(self.method, features=True)
        t0 = time.perf_counter()
        source, val, target = data["source"], data["val"], data["target"]
        fs = bb.extract(source, cache=self.cache, progress=self._progress()).features
        ft = bb.extract(target, cache=self.cache, progress=self._progress()).features
        k = len(self.classes_)
        weights = None
        xs = fs
        transform = ADAPT_METHODS[how["align"]].feature_transform() if how["align"] else None
        if transform is not None:
            xs = transform(fs, ft)
        if how["reweight"]:
            weights, self.weight_info_ = density_ratio_weights(fs, ft, seed=self.seed)
            self.weights_ = weights
        if how["tradaboost"]:
            labeled = data["labeled"]
            fl = bb.extract(labeled, cache=self.cache).features
            boost = TrAdaBoost(rounds=self.boost_rounds, seed=self.seed).fit(
                fs, source.labels, fl, labeled.labels, k)
            head = boost.head()
        else:
            C = self._choose_C(xs, source.labels, val, bb, weights)
            head = fit_head(xs, source.labels, k, "logreg", C=C, seed=self.seed,
                            sample_weight=weights)
        self.backbone_ = bb
        self.model_ = TransferModel(bb, head, list(self.classes_), info={
            "strategy": "adapt", "method": self.method, "kept": self.method,
            "freeze": "all", "seed": self.seed})
        self.kept_, self.flags_, self.best_epoch_ = self.method, [], None
        self.val_score_ = self._val_accuracy(val)
        probs = self.model_.proba_from_features(ft)
        self.target_scores_ = {"target_im": information_maximization(probs),
                               "target_entropy": prediction_entropy(probs),
                               "target_diversity": prediction_diversity(probs)}
        self.summary_ = {"method": self.method, "path": "frozen features",
                         "seconds": round(time.perf_counter() - t0, 3),
                         "source_val_accuracy": self.val_score_, **self.target_scores_,
                         **getattr(self, "weight_info_", {})}
        self.report_tables_ = []

    def _choose_C(self, x: np.ndarray, y: np.ndarray, val: Dataset | None, bb: Backbone,
                  weights: np.ndarray | None) -> float:
        """C of the logistic head, picked on the source validation features."""
        if val is None or val.labels is None or len(val) == 0:
            return 1.0
        fv = bb.extract(val, cache=self.cache).features
        best, best_acc = 1.0, -1.0
        for C in (0.01, 0.1, 1.0, 10.0):
            h = fit_head(x, y, len(self.classes_), "logreg", C=C, seed=self.seed,
                         sample_weight=weights, tol=1e-3)
            with torch.inference_mode():
                acc = float((h(torch.as_tensor(fv)).argmax(1).numpy() == val.labels).mean())
            if acc > best_acc:
                best, best_acc = C, acc
        return best
