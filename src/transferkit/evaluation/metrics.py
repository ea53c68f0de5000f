"""Classification metrics as a JSON-ready dict: accuracy, F1, per-class report, ROC AUC."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

from transferkit._io import write_json_atomic

__all__ = ["classification_metrics", "write_json"]


def _f(x: Any) -> float | None:
    """A plain Python float, or None for None/NaN/inf."""
    if x is None:
        return None
    v = float(x)
    return v if np.isfinite(v) else None


def _check_inputs(y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None,
                  names: list[str]) -> None:
    """Raise ValueError when labels, predictions and probabilities do not fit together."""
    k = len(names)
    if k < 1:
        raise ValueError("class_names is empty")
    if len(set(names)) != k:
        raise ValueError(f"class_names must be unique, got {names}")
    if y_true.ndim != 1 or y_pred.shape != y_true.shape:
        raise ValueError(f"y_true and y_pred must be 1-D and of equal length, got shapes "
                         f"{y_true.shape} and {y_pred.shape}")
    for what, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= k):
            raise ValueError(f"{what} holds class indices outside 0..{k - 1} "
                             f"(there are {k} class names)")
    if proba is not None and proba.shape != (len(y_true), k):
        raise ValueError(f"proba must have shape (n_samples, n_classes) = ({len(y_true)}, {k}), "
                         f"got {proba.shape}")


def _per_class_auc(y_true: np.ndarray, proba: np.ndarray, k: int) -> list[float | None]:
    """One-vs-rest ROC AUC of each class; None where the class lacks positives or negatives."""
    aucs: list[float | None] = [None] * k
    for c in range(k):
        pos = y_true == c
        if 0 < pos.sum() < len(y_true) and np.all(np.isfinite(proba[:, c])):
            aucs[c] = _f(roc_auc_score(pos.astype(np.int64), proba[:, c]))
    return aucs


def _log_loss(y_true: np.ndarray, proba: np.ndarray) -> float | None:
    """Mean negative log-probability of the true class (rows renormalised, clipped at 1e-15)."""
    p = np.clip(np.nan_to_num(proba, nan=0.0), 1e-15, None)
    p_true = p[np.arange(len(y_true)), y_true] / p.sum(axis=1)
    return _f(-np.mean(np.log(p_true)) + 0.0)  # + 0.0 turns -0.0 into 0.0


def _label_metrics(yt: np.ndarray, yp: np.ndarray, labels: list[int]
                   ) -> tuple[tuple[Any, Any, Any, Any], dict[str, Any]]:
    """(per-class precision, recall, F1, support) and the summary figures of predicted
    labels (macro averages over the classes that occur)."""
    per_class = precision_recall_fscore_support(yt, yp, labels=labels, zero_division=0)
    seen = sorted(set(yt.tolist()) | set(yp.tolist()))
    mp, mr, mf, _ = precision_recall_fscore_support(yt, yp, labels=seen, average="macro",
                                                    zero_division=0)
    _, _, wf, _ = precision_recall_fscore_support(yt, yp, labels=seen, average="weighted",
                                                  zero_division=0)
    return per_class, {"accuracy": _f(accuracy_score(yt, yp)),
                       "balanced_accuracy": _f(balanced_accuracy_score(yt, yp)),
                       "macro_f1": _f(mf), "weighted_f1": _f(wf), "macro_precision": _f(mp),
                       "macro_recall": _f(mr)}


def classification_metrics(y_true: Sequence[int] | np.ndarray,
                           y_pred: Sequence[int] | np.ndarray,
                           proba: np.ndarray | None,
                           class_names: Sequence[str]) -> dict[str, Any]:
    """Summary metrics, confusion matrix and per-class report of a classifier, as plain JSON.

    ``y_true``/``y_pred`` are indices into ``class_names``; ``proba`` is ``[n, K]`` or None.
    Macro averages are over the classes that occur in ``y_true`` or ``y_pred`` (scikit-learn's
    convention). ``roc_auc_ovr_macro`` averages the one-vs-rest AUCs of the classes that have
    both positives and negatives in ``y_true`` (for two classes: the positive class's AUC);
    it and ``log_loss`` are None when ``proba`` is None or nothing is computable. The
    confusion matrix has rows = true class and columns = predicted class, all K classes in
    ``class_names`` order. Every value is a plain int, float, str, list, dict or None.
    """
    yt = np.asarray(y_true, dtype=np.int64).reshape(-1)
    yp = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    names = [str(c) for c in class_names]
    k = len(names)
    pr = None if proba is None else np.asarray(proba, dtype=np.float64)
    _check_inputs(yt, yp, pr, names)
    labels = list(range(k))
    n = len(yt)
    out: dict[str, Any] = {"n_samples": n}
    prec, rec, f1, support = (np.zeros(k), np.zeros(k), np.zeros(k), np.zeros(k, dtype=int))
    with warnings.catch_warnings():
        # zero_division=0 covers empty classes; these silence the remaining chatter
        # (e.g. "y_pred contains classes not in y_true" from balanced accuracy).
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        if n:
            (prec, rec, f1, support), summary = _label_metrics(yt, yp, labels)
            out.update(summary)
        else:
            out.update(dict.fromkeys(("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1",
                                      "macro_precision", "macro_recall")))
        aucs: list[float | None] = [None] * k
        out["roc_auc_ovr_macro"] = None
        out["log_loss"] = None
        if pr is not None and n:
            aucs = _per_class_auc(yt, pr, k)
            valid = [aucs[1]] if k == 2 else aucs
            valid = [a for a in valid if a is not None]
            out["roc_auc_ovr_macro"] = _f(np.mean(valid)) if valid else None
            out["log_loss"] = _log_loss(yt, pr)
    out["class_names"] = names
    out["confusion_matrix"] = np.bincount(yt * k + yp, minlength=k * k).reshape(k, k).tolist()
    out["per_class"] = {
        name: {"precision": _f(prec[i]), "recall": _f(rec[i]), "f1": _f(f1[i]),
               "support": int(support[i]), "roc_auc": aucs[i]}
        for i, name in enumerate(names)}
    return out


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented UTF-8 JSON to ``path`` atomically; returns the path.

    Readers never see a half-written file: the text goes to a temporary file in the same
    folder, is fsynced, then renamed over ``path``.
    """
    return write_json_atomic(path, obj)
