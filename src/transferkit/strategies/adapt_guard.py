"""The adaptation guard and the label-free epoch choice of
:class:`~transferkit.strategies.adapt.DomainAdaptClassifier`: when an adapted model is
replaced by the source-only one trained beside it, and which epoch column a run maximises
(the guard judges the chosen epoch; it does not restrict the choice)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from transferkit.strategies.adapt_methods import SELECT


class Guard:
    """The guard's rules (its parameters and fitted attributes are the estimator's)."""

    guard_drop: float
    classes_: np.ndarray
    _say: Callable[[str], None]  # the estimator's log

    def _monitor(self, select: str, source_val: bool) -> tuple[str, str]:
        """The epoch-selection column of ``select`` (``source-val`` or ``im``); IM when there
        is no source validation data. An IM-picked epoch is not restricted to the epochs the
        guard accepts: the guard judges it afterwards (restricting the choice cost 8.5
        points on icons, ``benchmarks/results/case_icons_adapt.md``)."""
        if not source_val:
            if select == "source-val":
                self._say("no source validation data: the epoch is picked on the target's "
                          "information-maximisation score")
            return SELECT["im"]
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
        if da is not None and db is not None and da < 0.5 * db:
            flags.append(f"target predictions collapsed onto few classes (diversity "
                         f"{da:.3f}, source-only {db:.3f})")
        elif ia is not None and ib is not None and ia <= 0.05 < ib:
            flags.append(f"target predictions carry almost no information: collapsed or "
                         f"uncertain everywhere (information maximisation {ia:.3f}, "
                         f"source-only {ib:.3f})")
        return flags

    def _weight_flags(self, weights: dict[str, Any] | None) -> list[str]:
        """Why importance weights should not be trained on: worth fewer source items than
        there are classes (empty: they may)."""
        if weights is None or weights["effective_sample_size"] >= len(self.classes_):
            return []
        return [f"the importance weights are worth {weights['effective_sample_size']:.0f} "
                f"source items (effective sample size) for {len(self.classes_)} classes"]
