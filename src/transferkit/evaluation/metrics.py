"""Classification metrics as a JSON-ready dict: accuracy, F1, per-class report, ROC AUC."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)


def _f(x: Any) -> float | None:
    if x is None:
        return None
    v = float(x)
    return v if np.isfinite(v) else None


def classification_metrics(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
                           proba: np.ndarray | None,
                           class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, balanced accuracy, F1s, confusion matrix, per-class report and OvR ROC AUC."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    names = [str(c) for c in class_names]
    k = len(names)
    labels = list(range(k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", UserWarning)
        prec, rec, f1, support = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, zero_division=0)
        present = np.unique(y_true)
        macro = dict(zip(("macro_precision", "macro_recall", "macro_f1"),
                         precision_recall_fscore_support(y_true, y_pred, labels=present,
                                                         average="macro", zero_division=0)[:3],
                         strict=True))
        out: dict[str, Any] = {
            "n_samples": len(y_true),
            "accuracy": _f(accuracy_score(y_true, y_pred)),
            "balanced_accuracy": _f(balanced_accuracy_score(y_true, y_pred)),
            "macro_f1": _f(macro["macro_f1"]),
            "weighted_f1": _f(f1_score(y_true, y_pred, labels=present, average="weighted",
                                       zero_division=0)),
            "macro_precision": _f(macro["macro_precision"]),
            "macro_recall": _f(macro["macro_recall"]),
        }
    aucs: list[float | None] = [None] * k
    if proba is not None and len(y_true) > 0:
        proba = np.asarray(proba, dtype=np.float64)
        for c in labels:
            pos = y_true == c
            if 0 < pos.sum() < len(y_true):
                aucs[c] = _f(roc_auc_score(pos.astype(int), proba[:, c]))
        if k == 2:  # the binary AUC is the positive class's
            valid = [aucs[1]] if aucs[1] is not None else []
        else:
            valid = [a for a in aucs if a is not None]
        out["roc_auc_ovr_macro"] = _f(np.mean(valid)) if valid else None
        p = np.clip(proba, 1e-15, 1.0)
        out["log_loss"] = _f(log_loss(y_true, p / p.sum(axis=1, keepdims=True), labels=labels))
    else:
        out["roc_auc_ovr_macro"] = None
        out["log_loss"] = None
    out["class_names"] = names
    out["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=labels).tolist()
    out["per_class"] = {
        name: {"precision": _f(prec[i]), "recall": _f(rec[i]), "f1": _f(f1[i]),
               "support": int(support[i]), "roc_auc": aucs[i]}
        for i, name in enumerate(names)}
    return out

