"""``--bn auto``: the BatchNorm statistics of the shared trunk chosen on validation.

Each candidate mode (``shared``, ``task``, ``frozen``; see :mod:`transferkit.multitask.taskbn`)
trains its own joint model from the same starting weights with the same budget; the mode whose
joint model has the best mean validation accuracy over the tasks is kept. Test data is never
read by the choice. ``frozen`` is a candidate only for a pretrained backbone (an untrained
network's statistics are those of its initialisation), and a trunk without BatchNorm has one
candidate (every mode trains the same network).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from transferkit.multitask.taskbn import BN_MODES

PREFERENCE = ("task", "frozen", "shared")  # ties go to the earlier mode


def bn_candidates(bn: str, *, pretrained: bool, has_batchnorm: bool) -> list[str]:
    """The modes ``bn`` asks to train: itself when fixed, else the candidates of ``auto``."""
    if bn != "auto":
        if bn not in BN_MODES:
            raise ValueError(f"bn {bn!r}: choose from auto, {', '.join(BN_MODES)}")
        return [bn]
    if not has_batchnorm:
        return [fallback(pretrained)]
    return [m for m in PREFERENCE if pretrained or m != "frozen"]


def fallback(pretrained: bool) -> str:
    """The mode used when validation cannot choose (no BatchNorm, no validation data)."""
    return "frozen" if pretrained else "task"


def mean_val(results: Mapping[str, Any]) -> float | None:
    """Mean validation accuracy over the tasks that have validation data (else None)."""
    vals = [r.val_accuracy for r in results.values() if r.val_accuracy is not None]
    return sum(vals) / len(vals) if vals else None


def pick_bn(scores: Mapping[str, float | None], pretrained: bool) -> tuple[str, str]:
    """(mode, why): the validation-best of ``scores`` (ties: :data:`PREFERENCE` order); the
    fallback mode when no candidate has a validation score."""
    known = {m: s for m, s in scores.items() if s is not None}
    if not known:
        mode = fallback(pretrained)
        return mode, f"no validation data: {mode} (the rule for a " \
                     f"{'pretrained' if pretrained else 'from-scratch'} backbone)"
    best = max(known.values())
    mode = next(m for m in _ordered(known) if known[m] == best)
    listed = ", ".join(f"{m} {s:.3f}" for m, s in known.items())
    return mode, f"mean validation accuracy {listed} -> {mode}"


def _ordered(modes: Sequence[str] | Mapping[str, Any]) -> list[str]:
    return sorted(modes, key=lambda m: PREFERENCE.index(m) if m in PREFERENCE else 99)
