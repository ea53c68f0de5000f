"""Feature-extraction transfer: a frozen pretrained backbone and a shallow classifier."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from transferkit.backbones import Backbone, FeatureCache, load_backbone
from transferkit.backbones.modality import IMAGE_BACKBONE
from transferkit.data.dataset import Dataset
from transferkit.device import resolve_device
from transferkit.heads import HEADS, fit_head
from transferkit.model import TransferModel
from transferkit.strategies.base import Strategy, as_dataset, check_modality, require_labels

C_GRID = (0.01, 0.1, 1.0, 10.0)


class ProbeClassifier(Strategy):
    """Frozen backbone -> pooled features -> logistic regression, linear SVM, k-NN or MLP.

    ``X`` is a :class:`~transferkit.data.Dataset` (labels inside) or a sequence of items
    (image paths, arrays) with ``y``. With ``C="auto"`` the regularisation strength is chosen
    on the validation set when one is given to ``fit``, else by 3-fold cross-validation on
    the training features; the test set is never looked at. ``val_score_`` is the accuracy
    on the validation set, else the cross-validated accuracy of the chosen ``C``.
    """

    def __init__(self, backbone: str | Backbone = IMAGE_BACKBONE, head: str = "logreg",
                 C: float | str = "auto", hidden: int = 512, k: int = 5,
                 batch_size: int | None = None, cache: FeatureCache | bool | None = True,
                 skip_bad: bool = False, seed: int = 0, arch: str | None = None,
                 progress: Any = None, log: Callable[[str], None] | None = None,
                 device: str = "auto") -> None:
        self.backbone = backbone
        self.device = device
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
        self.log = log

    def check_params(self) -> None:
        """head, C, hidden and k (a ValueError names the bad one)."""
        if self.head not in HEADS:
            raise ValueError(f"head={self.head!r}: choose one of {', '.join(HEADS)}")
        if self._C_value() != "auto" and self.head == "knn":
            raise ValueError(f"--C {self.C}: the knn head has no regularisation strength (C "
                             f"is for the logreg, svm and mlp heads); leave --C out, or "
                             f"choose another --head")
        if int(self.hidden) < 1 or int(self.k) < 1:
            raise ValueError(f"hidden and k must be at least 1, got {self.hidden}, {self.k}")

    def _C_value(self) -> float | str:
        if isinstance(self.C, str) and self.C == "auto":
            return "auto"
        try:
            c = float(self.C)
        except (TypeError, ValueError):
            raise ValueError(f"--C must be a positive number or 'auto', got {self.C!r}"
                             ) from None
        if not c > 0:
            raise ValueError(f"--C must be a positive number or 'auto', got {self.C!r}")
        return c

    # --- fitting --------------------------------------------------------------------------
    def fit(self, X: Dataset | Sequence[Any], y: Sequence[Any] | None = None,
            X_val: Dataset | Sequence[Any] | None = None,
            y_val: Sequence[Any] | None = None) -> ProbeClassifier:
        """Extract (or reuse cached) features of X and fit the head on them."""
        self.check_params()
        t0 = time.perf_counter()
        train = require_labels(as_dataset(X, y, "X"), "the probe")
        self.backbone_ = load_backbone(self.backbone, arch=self.arch).place(self.device)
        check_modality(self.backbone_, train)
        feats = self._extract(train)
        labels = train.labels[feats.kept]
        self.classes_ = np.asarray(train.class_names)
        self.skipped_ = list(feats.skipped)
        self.cache_hits_ = feats.cache_hits
        self.extract_seconds_ = feats.seconds
        val_xy = None
        if X_val is not None:
            val = as_dataset(X_val, y_val, "X_val").align_classes(train.class_names)
            vf = self._extract(val)
            self.skipped_ += vf.skipped
            val_xy = (vf.features, val.labels[vf.kept])
        self.C_, cv_score = self._choose_C(feats.features, labels, val_xy)
        t1 = time.perf_counter()
        head = fit_head(feats.features, labels, len(self.classes_), self.head, C=self.C_,
                        hidden=self.hidden, k=self.k, seed=self.seed,
                        device=resolve_device(self.device))
        self.head_seconds_ = time.perf_counter() - t1
        if val_xy is not None and len(val_xy[1]):
            import torch

            with torch.inference_mode():
                pred = head(torch.as_tensor(val_xy[0])).argmax(1).numpy()
            self.val_score_: float | None = float((pred == val_xy[1]).mean())
        else:
            self.val_score_ = cv_score
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

    def _choose_C(self, x: np.ndarray, y: np.ndarray, val: tuple[np.ndarray, np.ndarray] | None
                  ) -> tuple[float, float | None]:
        """(C, cross-validated accuracy of that C when it was chosen by cross-validation)."""
        c = self._C_value()
        if c != "auto" or self.head == "knn":
            return (1.0 if c == "auto" else float(c)), None
        k = len(self.classes_)
        if val is not None and len(val[1]) > 0:
            scores = [self._timed(C, "validation", lambda C: [self._score_C(
                C, x, y, val[0], val[1], k)])[0][0] for C in C_GRID]
            return float(C_GRID[int(np.argmax(scores))]), None
        counts = np.bincount(y, minlength=k)
        n_splits = min(3, int(counts[counts > 0].min()))
        if n_splits < 2:
            return 1.0, None
        folds = list(StratifiedKFold(n_splits, shuffle=True, random_state=self.seed).split(x, y))
        per_c = [self._timed(C, f"{n_splits}-fold cross-validated", lambda C: [
            self._score_C(C, x[a], y[a], x[b], y[b], k) for a, b in folds]) for C in C_GRID]
        f1s = [np.mean([f for f, _ in runs]) for runs in per_c]
        best = int(np.argmax(f1s))
        return float(C_GRID[best]), float(np.mean([acc for _, acc in per_c[best]]))

    def _timed(self, C: float, how: str, score: Callable[[float], list[tuple[float, float]]]
               ) -> list[tuple[float, float]]:
        """``score(C)`` and, with ``log``, one line saying what it gave and how long it took."""
        t0 = time.perf_counter()
        out = score(C)
        if self.log is not None:
            f1 = float(np.mean([f for f, _ in out]))
            self.log(f"probe: C={C:g}: {how} macro F1 {f1:.3f} "
                     f"({time.perf_counter() - t0:.1f} s)")
        return out

    def _score_C(self, C: float, xa: np.ndarray, ya: np.ndarray, xb: np.ndarray,
                 yb: np.ndarray, k: int) -> tuple[float, float]:
        """(macro F1, accuracy) on (xb, yb) of the head fitted with ``C`` on (xa, ya)."""
        import torch

        try:
            head = fit_head(xa, ya, k, self.head, C=C, hidden=self.hidden, k=self.k,
                            seed=self.seed, tol=1e-3, device=resolve_device(self.device))
        except ValueError:  # e.g. a fold without every class for the svm calibrator
            return -1.0, 0.0
        with torch.inference_mode():
            pred = head(torch.as_tensor(xb)).argmax(1).numpy()
        return float(f1_score(yb, pred, average="macro")), float((pred == yb).mean())

    # --- inference ----------------------------------------------------------------------
    def transform(self, X: Dataset | Sequence[Any]) -> np.ndarray:
        """Backbone features of X."""
        self._check_fitted()
        return self._extract(as_dataset(X, None, "X")).features

    def predict_proba(self, X: Dataset | Sequence[Any]) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``."""
        self._check_fitted()
        feats = self._extract(as_dataset(X, None, "X"), skip_bad=False).features
        return self.model_.proba_from_features(feats)
