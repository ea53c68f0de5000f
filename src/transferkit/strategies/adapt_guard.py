"""The adaptation guard and the label-free epoch choice of
:class:`~transferkit.strategies.adapt.DomainAdaptClassifier`: when an adapted model is
replaced by the source-only one trained beside it, and which epoch column a run maximises
(an IM-picked epoch is one the guard would accept, whenever there is one)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from transferkit.strategies.adapt_methods import SELECT


class Guard:
    """The guard's rules (its parameters and fitted attributes are the estimator's)."""

    select: str | None
    guard_drop: float
    baseline_: dict[str, Any] | None
    classes_: np.ndarray
    _say: Callable[[str], None]  # the estimator's log

    def _floor(self) -> float | None:
        """The lowest source-validation accuracy the guard accepts: the source-only
        baseline's less ``guard_drop`` (None while the baseline itself trains, or without
        one)."""
        sb = None if self.baseline_ is None else self.baseline_["row"].get(
            "source_val_accuracy")
        return None if sb is None else sb - self.guard_drop

    def _monitor(self, how: dict[str, Any], source_val: bool) -> tuple[str, str]:
        """The epoch-selection column: the method's (the baseline: source-val unless
        ``select`` says otherwise); IM among the epochs the guard accepts when a baseline
        sets the floor; IM when there is no source validation data."""
        select = self.select or how.get("select") or "source-val"
        if not source_val:
            if select == "source-val":
                self._say("no source validation data: the epoch is picked on the target's "
                          "information-maximisation score")
            return SELECT["im"]
        if select == "im" and self._floor() is not None:
            return "target_im_admissible", "max"
        return SELECT[select]

    def _guard(self, run: dict[str, Any], base: dict[str, Any], *,
               source_val: bool = True) -> list[str]:
        """Why ``run`` should not replace the source-only ``base`` (empty: it may);
        ``source_val``: also when its source-validation accuracy falls too far. A run
        trained on importance weights worth fewer items than there are classes is flagged
        too: the weighted source cannot hold even one item per class."""
        flags = self._weight_flags(run.get("weight_info"))
        a, b = run["row"], base["row"]
        sa, sb = a.get("source_val_accuracy"), b.get("source_val_accuracy")
        if source_val and sa is not None and sb is not None and sa < sb - self.guard_drop:
            flags.append(f"source-validation accuracy {sa:.3f}, source-only {sb:.3f}")
        da, db = a.get("target_diversity"), b.get("target_diversity")
        ia, ib = a.get("target_im"), b.get("target_im")
        if (da is not None and db is not None and da < 0.5 * db) or (
                ia is not None and ib is not None and ia <= 0.05 < ib):
            flags.append(f"target predictions collapsed (information maximisation "
                         f"{a.get('target_im', float('nan')):.3f}, source-only "
                         f"{b.get('target_im', float('nan')):.3f})")
        return flags

    def _weight_flags(self, weights: dict[str, Any] | None) -> list[str]:
        """Why importance weights should not be trained on: worth fewer source items than
        there are classes (empty: they may)."""
        if weights is None or weights["effective_sample_size"] >= len(self.classes_):
            return []
        return [f"the importance weights are worth {weights['effective_sample_size']:.0f} "
                f"source items (effective sample size) for {len(self.classes_)} classes"]
