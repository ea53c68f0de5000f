"""The frozen-feature path of domain adaptation: every backbone stage frozen, the methods
that declare this path (source-only, CORAL's re-colouring, reweighting, TrAdaBoost) run on
extracted features in seconds."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from transferkit.backbones import Backbone
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
    baseline: bool
    advice_: str | None
    seed: int
    cache: Any
    boost_rounds: int
    classes_: np.ndarray

    def _fit_features(self, bb: Backbone, how: dict[str, Any], data: dict[str, Any]) -> None:
        """The declared method on frozen features; beside it (``baseline``) the source-only
        head, and the network path's guard: a method whose target predictions collapse
        onto few classes, or whose importance weights are worth fewer items than there are
        classes, is flagged and replaced by it."""
        check_path(self.method, features=True)
        t0 = time.perf_counter()
        source, target = data["source"], data["target"]
        fs = bb.extract(source, cache=self.cache, progress=self._progress()).features
        ft = bb.extract(target, cache=self.cache, progress=self._progress()).features
        val = data["val"]
        fv = (bb.extract(val, cache=self.cache).features
              if val is not None and val.labels is not None and len(val) else None)
        run = self._frozen_run(how, bb, fs, ft, fv, data)
        self.flags_: list[str] = []
        self.baseline_ = None
        chosen = run
        if self.baseline and not how["source_only"]:
            base = self._frozen_run({"align": None, "reweight": False, "tradaboost": False},
                                    bb, fs, ft, fv, data)
            self.baseline_ = {"row": base["row"]}
            # the collapse rule only: a fall in source-validation accuracy is what a feature
            # transform trades for the target (CORAL on digits -> MNIST: source validation
            # 0.85 vs 0.95, target 0.258 vs 0.095), so it would reject what works
            self.flags_ = self._guard(run, base, source_val=False)  # type: ignore[attr-defined]
            if self.flags_:
                chosen = base
                self.advice_ = (f"{self.method} was flagged ({'; '.join(self.flags_)}): the "
                                f"model is the source-only one on the same features")
                self._say(self.advice_)  # type: ignore[attr-defined]
        self.kept_ = self.method if chosen is run else "source-only"
        self.backbone_, self.best_epoch_ = bb, None
        self.model_ = TransferModel(bb, chosen["head"], list(self.classes_), info={
            "strategy": "adapt", "method": self.method, "kept": self.kept_,
            "freeze": "all", "seed": self.seed})
        self.val_score_ = chosen["row"]["source_val_accuracy"]
        self.target_scores_ = {k: chosen["row"][k] for k in
                               ("target_im", "target_entropy", "target_diversity")}
        self.summary_ = {"method": self.method, "path": "frozen features", "kept": self.kept_,
                         "flags": list(self.flags_),
                         "seconds": round(time.perf_counter() - t0, 3),
                         "source_val_accuracy": self.val_score_, **self.target_scores_,
                         **getattr(self, "weight_info_", {})}
        self.report_tables_ = []

    def _frozen_run(self, how: dict[str, Any], bb: Backbone, fs: np.ndarray, ft: np.ndarray,
                    fv: np.ndarray | None, data: dict[str, Any]) -> dict[str, Any]:
        """One head on the frozen features as ``how`` says (``fv``: the source validation
        features, None without), and its label-free scores."""
        source, val = data["source"], data["val"]
        k = len(self.classes_)
        weights = None
        xs = fs
        transform = ADAPT_METHODS[how["align"]].feature_transform() if how["align"] else None
        if transform is not None:  # the source validation data is source data: moved alike
            xs = transform(fs, ft)
            fv = transform(fv, ft) if fv is not None else None
        if how["reweight"]:
            weights, self.weight_info_ = density_ratio_weights(fs, ft, seed=self.seed)
            self.weights_ = weights
        if how["tradaboost"]:
            labeled = data["labeled"]
            fl = bb.extract(labeled, cache=self.cache).features
            head = TrAdaBoost(rounds=self.boost_rounds, seed=self.seed).fit(
                fs, source.labels, fl, labeled.labels, k).head()
        else:
            C = self._choose_C(xs, source.labels, fv, None if fv is None else val.labels,
                               weights)
            head = fit_head(xs, source.labels, k, "logreg", C=C, seed=self.seed,
                            sample_weight=weights)
        model = TransferModel(bb, head, list(self.classes_))
        probs = model.proba_from_features(ft)
        val_acc = None if fv is None else float(
            (model.proba_from_features(fv).argmax(1) == val.labels).mean())
        return {"head": head, "weight_info": self.weight_info_ if how["reweight"] else None,
                "row": {
            "source_val_accuracy": val_acc, "target_im": information_maximization(probs),
            "target_entropy": prediction_entropy(probs),
            "target_diversity": prediction_diversity(probs)}}

    def _choose_C(self, x: np.ndarray, y: np.ndarray, fv: np.ndarray | None,
                  yv: np.ndarray | None, weights: np.ndarray | None) -> float:
        """C of the logistic head, picked on the source validation features ``fv``."""
        if fv is None or yv is None:
            return 1.0
        best, best_acc = 1.0, -1.0
        for C in (0.01, 0.1, 1.0, 10.0):
            h = fit_head(x, y, len(self.classes_), "logreg", C=C, seed=self.seed,
                         sample_weight=weights, tol=1e-3)
            with torch.inference_mode():
                acc = float((h(torch.as_tensor(fv, dtype=torch.float32)).argmax(1).numpy()
                             == yv).mean())
            if acc > best_acc:
                best, best_acc = C, acc
        return best
