"""Report plots rendered to PNG bytes with matplotlib's Agg backend."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def confusion_matrix_png(cm: Sequence[Sequence[int]] | np.ndarray, class_names: Sequence[str],
                         normalize: bool = True) -> bytes:
    """Confusion matrix heat map (rows: true class, columns: predicted), cells annotated."""
    cm = np.asarray(cm, dtype=np.float64)
    k = len(class_names)
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    side = min(4 + 0.45 * k, 16)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), labels=list(class_names), rotation=45, ha="right")
    ax.set_yticks(range(k), labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("row-normalised" if normalize else "counts")
    if k <= 30:
        thresh = shown.max() / 2 if shown.size else 0
        for i in range(k):
            for j in range(k):
                if cm[i, j] == 0:
                    continue
                txt = f"{int(cm[i, j])}"
                ax.text(j, i, txt, ha="center", va="center", fontsize=8,
                        color="white" if shown[i, j] > thresh else "black")
    return _png(fig)


def _curves(y_true: np.ndarray, proba: np.ndarray,
            k: int) -> list[tuple[int, np.ndarray, np.ndarray, float]]:
    out = []
    for c in range(k):
        pos = (y_true == c).astype(int)
        if 0 < pos.sum() < len(pos):
            fpr, tpr, _ = roc_curve(pos, proba[:, c])
            out.append((c, fpr, tpr, float(roc_auc_score(pos, proba[:, c]))))
    return out


def _micro(y_true: np.ndarray, proba: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, float]:
    onehot = np.eye(k)[y_true].ravel()
    scores = np.asarray(proba).ravel()
    fpr, tpr, _ = roc_curve(onehot, scores)
    return fpr, tpr, float(roc_auc_score(onehot, scores))


def roc_curves_png(y_true: Sequence[int] | np.ndarray, proba: np.ndarray | None,
                   class_names: Sequence[str], max_curves: int = 10) -> bytes | None:
    """One-vs-rest ROC curves with AUC in the legend; None when not computable."""
    if proba is None:
        return None
    y = np.asarray(y_true, dtype=np.int64)
    k = len(class_names)
    curves = _curves(y, np.asarray(proba), k)
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    if k == 2:
        curves = [c for c in curves if c[0] == 1] or curves[:1]
    else:
        fpr, tpr, auc = _micro(y, proba, k)
        ax.plot(fpr, tpr, color="black", lw=2.2, label=f"micro-average (AUC {auc:.3f})")
    for c, fpr, tpr, auc in sorted(curves, key=lambda t: t[3])[:max_curves]:
        ax.plot(fpr, tpr, lw=1.2, label=f"{class_names[c]} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC, one class vs rest" + (" (lowest AUCs)" if len(curves) > max_curves else ""))
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def roc_comparison_png(curves: dict[str, tuple[np.ndarray, np.ndarray]],
                       class_names: Sequence[str]) -> bytes | None:
    """Micro-average ROC of several models on one axes (e.g. the worst and best model)."""
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    drawn = 0
    for name, (y, proba) in curves.items():
        y = np.asarray(y, dtype=np.int64)
        if len(np.unique(y)) < 2:
            continue
        if k == 2:
            fpr, tpr, _ = roc_curve(y, np.asarray(proba)[:, 1])
            auc = float(roc_auc_score(y, np.asarray(proba)[:, 1]))
        else:
            fpr, tpr, auc = _micro(y, np.asarray(proba), k)
        ax.plot(fpr, tpr, lw=1.8, label=f"{name} (AUC {auc:.3f})")
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC (micro-average)")
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def per_class_f1_png(metrics: dict[str, Any]) -> bytes:
    """Horizontal bars of per-class F1, worst at the top."""
    items = sorted(metrics["per_class"].items(), key=lambda kv: kv[1]["f1"] or 0.0, reverse=True)
    names = [n for n, _ in items]
    vals = [v["f1"] or 0.0 for _, v in items]
    fig, ax = plt.subplots(figsize=(6.5, max(2.0, 0.3 * len(names) + 1)))
    bars = ax.barh(range(len(names)), vals, color="#4c72b0")
    ax.set_yticks(range(len(names)), labels=names)
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("F1")
    ax.set_title("per-class F1")
    for b, v in zip(bars, vals, strict=True):
        ax.text(min(v + 0.01, 0.98), b.get_y() + b.get_height() / 2, f"{v:.2f}",
                va="center", fontsize=8)
    return _png(fig)


def learning_curve_png(history: dict[str, list[float]]) -> bytes:
    """Curves of per-epoch values (e.g. train_loss, val_accuracy) against epoch."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, values in history.items():
        ax.plot(range(1, len(values) + 1), values, marker="o", ms=3, label=name)
    ax.set_xlabel("epoch")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)
