"""Report plots rendered to PNG bytes with matplotlib's Agg renderer.

Figures are built as plain ``matplotlib.figure.Figure`` objects on an explicit Agg canvas, so
nothing here needs a display, touches pyplot's global figure list or changes the backend of
an interactive session that imports this module; nothing is ever shown.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import roc_auc_score, roc_curve

__all__ = [
    "confusion_matrix_png",
    "learning_curve_png",
    "per_class_f1_png",
    "roc_comparison_png",
    "roc_curves_png",
]

DPI = 100
_LABEL_CHARS = 24  # longer class names are shortened on axes (tables show them in full)
_GRID = {"alpha": 0.3, "lw": 0.6}


def _new_figure(width: float, height: float) -> Figure:
    """A figure drawn by the Agg renderer, independent of pyplot."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    """The figure as PNG bytes; the figure is cleared afterwards."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI, facecolor="white", bbox_inches="tight",
                    pad_inches=0.08)
    finally:
        fig.clear()
    return buf.getvalue()


def _short(name: str, n: int = _LABEL_CHARS) -> str:
    """``name`` cut to ``n`` characters with an ellipsis."""
    return name if len(name) <= n else name[: n - 1] + "…"


def confusion_matrix_png(cm: Sequence[Sequence[int]] | np.ndarray, class_names: Sequence[str],
                         normalize: bool = True) -> bytes:
    """Confusion matrix heat map (rows: true class, columns: predicted) with annotated cells.

    With ``normalize`` the colours are row-normalised (each row is the recall of its class)
    and cells show the percentage and the count; otherwise colours and numbers are counts.
    """
    counts = np.asarray(cm, dtype=np.float64)
    names = [_short(str(c)) for c in class_names]
    k = len(names)
    if counts.shape != (k, k):
        raise ValueError(f"confusion matrix must be {k}x{k} for {k} class names, "
                         f"got shape {counts.shape}")
    row = counts.sum(axis=1, keepdims=True)
    shown = np.divide(counts, row, out=np.zeros_like(counts), where=row > 0) if normalize \
        else counts
    cell = 0.62 if k <= 10 else 0.42 if k <= 20 else 0.34
    side = max(3.0, cell * k)
    longest = max((len(n) for n in names), default=1)
    margin = 0.9 + 0.065 * longest
    fig = _new_figure(side + margin + 1.1, side + margin + 0.4)
    ax = fig.add_subplot()
    vmax = 1.0 if normalize else max(float(shown.max()), 1.0)
    im = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, shrink=0.8)
    cbar.ax.tick_params(labelsize=8)
    tick_size = 9 if k <= 15 else 7
    ax.set_xticks(range(k), labels=names, rotation=45 if k > 3 else 0, ha="right" if k > 3
                  else "center", rotation_mode="anchor", fontsize=tick_size)
    ax.set_yticks(range(k), labels=names, fontsize=tick_size)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("colour: share of the true class (row-normalised)" if normalize
                 else "counts", fontsize=10)
    ax.set_xticks(np.arange(-0.5, k), minor=True)
    ax.set_yticks(np.arange(-0.5, k), minor=True)
    ax.grid(which="minor", color="white", lw=0.8)
    ax.tick_params(which="minor", length=0)
    if k <= 30:
        font = 9 if k <= 10 else 7 if k <= 20 else 6
        for i in range(k):
            for j in range(k):
                if counts[i, j] == 0:
                    continue
                n = int(counts[i, j])
                txt = f"{100 * shown[i, j]:.0f}%\n{n}" if normalize and k <= 12 else f"{n}"
                dark = shown[i, j] > 0.55 * vmax
                ax.text(j, i, txt, ha="center", va="center", fontsize=font,
                        color="white" if dark else "#1d2330", linespacing=1.1)
    return _png(fig)


def _as_proba(y_true: Sequence[int] | np.ndarray, proba: np.ndarray,
              k: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities as arrays, checked against each other and ``k`` classes."""
    y = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(proba, dtype=np.float64)
    if p.shape != (len(y), k):
        raise ValueError(f"proba must have shape ({len(y)}, {k}), got {p.shape}")
    return y, p


def _roc(target: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """ROC curve and AUC of a binary target, or None without both positives and negatives."""
    if not 0 < target.sum() < len(target) or not np.all(np.isfinite(score)):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        fpr, tpr, _ = roc_curve(target, score)
        return fpr, tpr, float(roc_auc_score(target, score))


def _micro(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Micro-average ROC: every (item, class) pair is one binary decision."""
    k = p.shape[1]
    if k == 2:
        return _roc((y == 1).astype(np.int64), p[:, 1])
    return _roc(np.eye(k, dtype=np.int64)[y].ravel(), p.ravel())


def _roc_axes(fig: Figure, title: str) -> Any:
    """Square ROC axes with the chance diagonal."""
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", color="#9aa3b0", lw=1, label="_chance")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=10)
    ax.grid(**_GRID)
    return ax


def roc_curves_png(y_true: Sequence[int] | np.ndarray, proba: np.ndarray | None,
                   class_names: Sequence[str], max_curves: int = 10) -> bytes | None:
    """One-vs-rest ROC curves with each AUC in the legend; None when none is computable.

    Two classes: one curve, for the positive class (index 1). More classes: the micro-average
    plus one curve per class; beyond ``max_curves`` classes only the lowest-AUC ones are drawn.
    """
    if proba is None:
        return None
    names = [str(c) for c in class_names]
    k = len(names)
    y, p = _as_proba(y_true, proba, k)
    if k < 2 or len(y) == 0:
        return None
    if k == 2:
        curve = _roc((y == 1).astype(np.int64), p[:, 1])
        if curve is None:
            return None
        fig = _new_figure(5.4, 5.0)
        ax = _roc_axes(fig, f"ROC: {_short(names[1])} vs {_short(names[0])}")
        fpr, tpr, auc = curve
        ax.plot(fpr, tpr, lw=2, color="#2f6db5", label=f"{_short(names[1])} (AUC {auc:.3f})")
        ax.legend(fontsize=8, loc="lower right")
        return _png(fig)
    curves = []
    for c in range(k):
        r = _roc((y == c).astype(np.int64), p[:, c])
        if r is not None:
            curves.append((c, *r))
    if not curves:
        return None
    shown = sorted(curves, key=lambda t: t[3])[: max(0, max_curves)]
    title = "ROC, each class vs rest"
    if len(curves) > len(shown):
        title += f" ({len(shown)} lowest-AUC of {len(curves)} classes)"
    fig = _new_figure(5.4, 5.0)
    ax = _roc_axes(fig, title)
    colours = [f"C{i % 10}" for i in range(len(shown))]
    for (c, fpr, tpr, auc), col in zip(sorted(shown, key=lambda t: t[0]), colours, strict=True):
        ax.plot(fpr, tpr, lw=1.2, color=col, alpha=0.9,
                label=f"{_short(names[c], 18)} ({auc:.3f})")
    micro = _micro(y, p)
    if micro is not None:
        fpr, tpr, auc = micro
        ax.plot(fpr, tpr, color="black", lw=2.2, label=f"micro-average ({auc:.3f})")
    ax.legend(fontsize=7, loc="lower right", title="class (AUC)", title_fontsize=7)
    return _png(fig)


def roc_comparison_png(curves: Mapping[str, tuple[Sequence[int] | np.ndarray, np.ndarray]],
                       class_names: Sequence[str]) -> bytes | None:
    """Micro-average ROC of several models on one axes, AUCs in the legend.

    ``curves`` maps a model name to its ``(y_true, proba)``. For two classes each curve is
    the positive class's. Returns None when no model's curve is computable.
    """
    k = len(class_names)
    drawn = []
    for name, (y_true, proba) in curves.items():
        y, p = _as_proba(y_true, proba, k)
        r = _micro(y, p) if k >= 2 and len(y) else None
        if r is not None:
            drawn.append((str(name), *r))
    if not drawn:
        return None
    fig = _new_figure(5.4, 5.0)
    ax = _roc_axes(fig, "ROC, micro-average" if k > 2 else
                   f"ROC: {_short(str(class_names[1]))} vs {_short(str(class_names[0]))}")
    for i, (name, fpr, tpr, auc) in enumerate(drawn):
        ax.plot(fpr, tpr, lw=2, color=f"C{i % 10}", label=f"{_short(name, 40)} (AUC {auc:.3f})")
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def per_class_f1_png(metrics: Mapping[str, Any]) -> bytes:
    """Horizontal bars of per-class F1 from ``classification_metrics`` output, worst on top.

    Classes absent from the evaluated data (support 0) are drawn grey and marked.
    """
    rows = [(str(n), v.get("f1") or 0.0, int(v.get("support") or 0))
            for n, v in metrics["per_class"].items()]
    rows.sort(key=lambda r: (r[2] > 0, r[1]), reverse=True)  # bottom: best; top: worst
    k = len(rows)
    fig = _new_figure(5.4, max(2.2, 0.26 * k + 1.1))
    ax = fig.add_subplot()
    cmap = colormaps["RdYlGn"]
    colours = [cmap(0.15 + 0.7 * f) if s > 0 else "#c3c9d2" for _, f, s in rows]
    bars = ax.barh(range(k), [f for _, f, _ in rows], color=colours, height=0.7,
                   edgecolor="#5a6372", lw=0.4)
    labels = [f"{_short(n)} (n={s})" if s > 0 else f"{_short(n)} (absent)" for n, _, s in rows]
    ax.set_yticks(range(k), labels=labels, fontsize=8 if k <= 30 else 6)
    ax.set_ylim(-0.6, k - 0.4)
    ax.set_xlim(0, 1.12)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_xlabel("F1")
    ax.set_title("per-class F1 (worst at the top)", fontsize=10)
    ax.grid(axis="x", **_GRID)
    ax.set_axisbelow(True)
    if k <= 60:
        for b, (_, f, _s) in zip(bars, rows, strict=True):
            ax.text(f + 0.01, b.get_y() + b.get_height() / 2, f"{f:.2f}", va="center",
                    fontsize=7)
    return _png(fig)


def learning_curve_png(history: Mapping[str, Sequence[float | None]],
                       kept: int | None = None) -> bytes:
    """Per-epoch curves (e.g. ``train_loss``, ``val_accuracy``) against epoch 1, 2, ...

    Series whose name contains "loss" use the left axis; when there are also other series
    (accuracies, F1...) those use a right axis. Missing values (None/NaN) leave gaps.
    ``kept``: the epoch (1-based position) whose weights were kept, marked by a line.
    """
    series = {str(k): np.array([np.nan if v is None else float(v) for v in vals], dtype=float)
              for k, vals in history.items()}
    losses = {k: v for k, v in series.items() if "loss" in k.lower()}
    others = {k: v for k, v in series.items() if k not in losses}
    fig = _new_figure(6.4, 3.8)
    ax = fig.add_subplot()
    ax.set_xlabel("epoch")
    ax.grid(**_GRID)
    if not any(len(v) for v in series.values()):
        ax.text(0.5, 0.5, "no history recorded", ha="center", va="center",
                transform=ax.transAxes, color="#5a6372")
        ax.set_xticks([])
        ax.set_yticks([])
        return _png(fig)
    left, right = (losses, others) if losses else (others, {})
    ax2 = ax.twinx() if right else None
    handles = []
    for i, (name, vals) in enumerate([*left.items(), *right.items()]):
        target = ax if name in left else ax2
        epochs = np.arange(1, len(vals) + 1)
        (h,) = target.plot(epochs, vals, marker="o", ms=3, lw=1.6, color=f"C{i % 10}",
                           ls="-" if name in left else "--", label=name)
        handles.append(h)
    if kept is not None:
        handles.append(ax.axvline(kept, color="#444444", lw=1.2, ls=":",
                                  label=f"kept: epoch {kept}"))
    ax.set_ylabel("loss" if losses else "value")
    if ax2 is not None:
        ax2.set_ylabel("metric")
    n_max = max(len(v) for v in series.values())
    if n_max <= 20:
        ax.set_xticks(range(1, n_max + 1))
    ax.set_xlim(0.5, n_max + 0.5)
    ax.set_title("learning curves", fontsize=10)
    fig.legend(handles=handles, fontsize=8, loc="outside lower center",
               ncols=min(len(handles), 4), frameon=False)
    return _png(fig)


def spectrogram_png(wave: np.ndarray, rate: int, width: float = 1.6, height: float = 1.0
                    ) -> bytes:
    """A small log-power spectrogram of a waveform (no axes: a gallery thumbnail)."""
    n, hop = 400, 160
    if wave.size < n:
        wave = np.pad(wave, (0, n - wave.size))
    frames = np.lib.stride_tricks.sliding_window_view(wave, n)[::hop] * np.hanning(n)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    img = 10 * np.log10(power.T + 1e-10)
    fig = Figure(figsize=(width, height), dpi=DPI)  # no layout engine: one full-bleed axes
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(img, origin="lower", aspect="auto", cmap="magma",
              vmin=img.max() - 80, vmax=img.max())
    ax.set_axis_off()
    return _png(fig)
