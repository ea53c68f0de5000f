"""Feature-extraction transfer: a frozen pretrained backbone and a shallow classifier."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from transferkit.backbones import Backbone, FeatureCache, load_backbone
from transferkit.data.dataset import Dataset, from_arrays
from transferkit.data.text import from_texts
from transferkit.errors import DataError
from transferkit.heads import HEADS, fit_head
from transferkit.model import TransferModel
from transferkit.strategies.base import ModelPredictMixin

C_GRID = (0.01, 0.1, 1.0, 10.0)


class ProbeClassifier(ModelPredictMixin, ClassifierMixin, BaseEstimator):
    """Frozen backbone -> pooled features -> logistic regression, linear SVM, k-NN or MLP.

    ``X`` is a :class:`~transferkit.data.Dataset` (labels inside) or a sequence of items
    (image paths, arrays) with ``y``. With ``C="auto"`` the regularisation strength is chosen
    on the validation set when one is given to ``fit``, else by 3-fold cross-validation on
    the training features; the test set is never looked at.
    """

    def __init__(self, backbone: str | Backbone = "efficientnet_lite0", head: str = "logreg",
                 C: float | str = "auto", hidden: int = 512, k: int = 5,
                 batch_size: int | None = None, cache: FeatureCache | bool | None = True,
                 skip_bad: bool = False, seed: int = 0, arch: str | None = None,
                 progress: Any = None) -> None:
        self.backbone = backbone
        self.head = head
        self.C = C
        self.hidden = hidden
        self.k = k
        self.batch_size = batch_size
        self.cache = cache
        self.skip_bad = skip_bad
        self.seed = seed
        self.arch = arch
        self.progress = progress

    # --- fitting --------------------------------------------------------------------------
    def fit(self, X: Dataset | Sequence[Any], y: Sequence[Any] | None = None,
            X_val: Dataset | Sequence[Any] | None = None,
            y_val: Sequence[Any] | None = None) -> ProbeClassifier:
        """Extract (or reuse cached) features of X and fit the head on them."""
        if self.head not in HEADS:
            raise ValueError(f"head={self.head!r}: choose one of {', '.join(HEADS)}")
        t0 = time.perf_counter()
        train = _as_dataset(X, y, "X")
        self.backbone_ = load_backbone(self.backbone, arch=self.arch)
        check_modality(self.backbone_, train)
        feats = self._extract(train)
        labels = train.labels[feats.kept]
        self.classes_ = np.asarray(train.class_names)
        self.skipped_ = list(feats.skipped)
        self.cache_hits_ = feats.cache_hits
        self.extract_seconds_ = feats.seconds
        val_xy = None
        if X_val is not None:
            val = _as_dataset(X_val, y_val, "X_val").align_classes(train.class_names)
            vf = self._extract(val)
            self.skipped_ += vf.skipped
            val_xy = (vf.features, val.labels[vf.kept])
        self.C_ = self._choose_C(feats.features, labels, val_xy)
        t1 = time.perf_counter()
        head = fit_head(feats.features, labels, len(self.classes_), self.head, C=self.C_,
                        hidden=self.hidden, k=self.k, seed=self.seed)
        self.head_seconds_ = time.perf_counter() - t1
        self.model_ = TransferModel(self.backbone_, head, list(self.classes_),
                                    info={"strategy": "probe", "head": self.head,
                                          "C": self.C_, "seed": self.seed})
        self.n_features_in_ = self.backbone_.feature_dim
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _extract(self, ds: Dataset, skip_bad: bool | None = None) -> Any:
        return self.backbone_.extract(ds, batch_size=self.batch_size, cache=self.cache,
                                      skip_bad=self.skip_bad if skip_bad is None else skip_bad,
                                      progress=self.progress)

    def _choose_C(self, x: np.ndarray, y: np.ndarray,
                  val: tuple[np.ndarray, np.ndarray] | None) -> float:
        if self.C != "auto":
            return float(self.C)
        if self.head == "knn":
            return 1.0
        k = len(self.classes_)
        if val is not None and len(val[1]) > 0:
            scores = [self._score_C(C, x, y, val[0], val[1], k) for C in C_GRID]
            return float(C_GRID[int(np.argmax(scores))])
        counts = np.bincount(y, minlength=k)
        n_splits = min(3, int(counts[counts > 0].min()))
        if n_splits < 2:
            return 1.0
        folds = list(StratifiedKFold(n_splits, shuffle=True, random_state=self.seed).split(x, y))
        scores = [np.mean([self._score_C(C, x[a], y[a], x[b], y[b], k) for a, b in folds])
                  for C in C_GRID]
        return float(C_GRID[int(np.argmax(scores))])

    def _score_C(self, C: float, xa: np.ndarray, ya: np.ndarray, xb: np.ndarray,
                 yb: np.ndarray, k: int) -> float:
        import torch

        try:
            head = fit_head(xa, ya, k, self.head, C=C, hidden=self.hidden, k=self.k,
                            seed=self.seed, tol=1e-3)
        except ValueError:  # e.g. a fold without every class for the svm calibrator
            return -1.0
        with torch.inference_mode():
            pred = head(torch.as_tensor(xb)).argmax(1).numpy()
        return float(f1_score(yb, pred, average="macro"))

    # --- inference ----------------------------------------------------------------------
    def transform(self, X: Dataset | Sequence[Any]) -> np.ndarray:
        """Backbone features of X."""
        return self._extract(_as_dataset(X, None, "X")).features

    def predict_proba(self, X: Dataset | Sequence[Any]) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``."""
        feats = self._extract(_as_dataset(X, None, "X"), skip_bad=False).features
        return self.model_.proba_from_features(feats)


def _as_dataset(X: Dataset | Sequence[Any], y: Sequence[Any] | None, name: str) -> Dataset:
    """X as a Dataset: a Dataset as is, a list of texts, or image paths/arrays."""
    if isinstance(X, Dataset):
        if y is not None:
            raise ValueError(f"{name} is a Dataset with its own labels; do not pass y")
        return X
    items = list(X)
    if items and all(isinstance(t, str) for t in items) and not any(
            _is_file(t) for t in items[:5]):
        return from_texts(items, y, source=f"<{name}>")
    return from_arrays(items, y, source=f"<{name}>")


def _is_file(s: str) -> bool:
    try:
        return len(s) < 4096 and "\n" not in s and Path(s).is_file()
    except OSError:
        return False


def check_modality(backbone: Backbone, data: Dataset) -> None:
    """Refuse text data on an image backbone and the other way round, naming both."""
    if data.modality != backbone.modality and (data.modality == "text"
                                               or backbone.modality == "text"):
        raise DataError(f"{data.source}: {data.modality} data, but backbone "
                        f"{backbone.name!r} is a {backbone.modality} backbone; pick a "
                        f"{data.modality} backbone ('transferkit models' lists them)")
