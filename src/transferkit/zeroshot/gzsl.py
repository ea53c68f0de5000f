"""Generalised zero-shot evaluation (Xian et al., "Zero-shot learning: the good, the bad and
the ugly"): test images of seen and unseen classes are classified among *all* classes;
accuracy is averaged per class, separately over the seen and the unseen test classes, and
summarised by their harmonic mean H. Calibrated stacking subtracts a constant from the
seen classes' scores (models favour the classes they were trained on); the constant is chosen
on validation data, never on the test set."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def per_class_accuracy(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[int]
                       ) -> float | None:
    """Mean over ``classes`` (those present in ``y_true``) of each class's accuracy."""
    accs = [float((y_pred[y_true == c] == c).mean()) for c in classes if (y_true == c).any()]
    return float(np.mean(accs)) if accs else None


def harmonic(seen: float | None, unseen: float | None) -> float | None:
    """2su/(s+u), 0 when both are 0, None when either is missing."""
    if seen is None or unseen is None:
        return None
    return 0.0 if seen + unseen == 0 else 2 * seen * unseen / (seen + unseen)


def gzsl_metrics(scores: np.ndarray, y_true: np.ndarray, seen: Sequence[int],
                 unseen: Sequence[int], gamma: float = 0.0) -> dict[str, float | None]:
    """Seen / unseen per-class accuracy among all classes and H (``gamma`` subtracted from
    the seen classes' scores), and ``zsl_unseen``: unseen test images among the unseen
    classes only (the classic zero-shot accuracy)."""
    s = np.asarray(scores, dtype=np.float64).copy()
    s[:, list(seen)] -= gamma
    pred = s.argmax(axis=1)
    acc_s = per_class_accuracy(y_true, pred, seen)
    acc_u = per_class_accuracy(y_true, pred, unseen)
    out: dict[str, float | None] = {"seen": acc_s, "unseen": acc_u, "H": harmonic(acc_s, acc_u),
                                    "gamma": float(gamma)}
    mask = np.isin(y_true, list(unseen))
    if mask.any():
        u = list(unseen)
        zsl = np.asarray(u)[np.asarray(scores)[mask][:, u].argmax(axis=1)]
        out["zsl_unseen"] = per_class_accuracy(y_true[mask], zsl, u)
    else:
        out["zsl_unseen"] = None
    return out


def choose_gamma(scores: np.ndarray, y_true: np.ndarray, seen: Sequence[int],
                 unseen: Sequence[int], grid: int = 41) -> float:
    """The calibration constant maximising H on validation scores (ties: the smallest)."""
    s = np.asarray(scores, dtype=np.float64)
    spread = float(np.percentile(s, 95) - np.percentile(s, 5)) or 1.0
    best, best_h = 0.0, -1.0
    for g in np.linspace(-spread, spread, grid):
        h = gzsl_metrics(s, y_true, seen, unseen, g)["H"]
        if h is not None and h > best_h + 1e-12:
            best, best_h = float(g), h
    return best
