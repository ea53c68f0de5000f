"""Few-shot evaluation: seeded N-way K-shot episodes drawn from a labelled set, each classified
by a method from its support set alone, scored on its queries; the mean accuracy with a 95%
confidence interval over the episodes.

Episodes come from the same sampler as episodic training (:class:`~transferkit.train.plan.
EpisodicPlan`): support and query disjoint, classes drawn from successive seeded
permutations (so every class appears about equally often), labels re-indexed 0..N-1. With a
frozen backbone every episode reuses the features extracted once (cached on disk).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from transferkit.fewshot.methods import FEATURE_METHODS, EpisodeMethod, canonical
from transferkit.train.plan import EpisodicPlan, Step


@dataclass
class EpisodeResult:
    """Per-episode accuracies of one method, and what the episodes were."""

    method: str
    ways: int
    shots: int
    queries: int
    accuracies: np.ndarray
    seconds: float
    episodes: list[Step] = field(default_factory=list, repr=False)
    predictions: list[np.ndarray] = field(default_factory=list, repr=False)
    prepare_seconds: float = 0.0  # what the method needed first (features, training)

    @property
    def mean(self) -> float:
        """Mean accuracy over the episodes."""
        return float(self.accuracies.mean())

    @property
    def ci95(self) -> float:
        """Half-width of the 95% confidence interval of the mean (1.96 standard errors)."""
        n = len(self.accuracies)
        return float(1.96 * self.accuracies.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan

    def summary(self) -> dict[str, Any]:
        """JSON: the setting, mean, confidence interval, time and per-episode accuracies."""
        return {"method": self.method, "ways": self.ways, "shots": self.shots,
                "queries": self.queries, "episodes": len(self.accuracies),
                "accuracy": self.mean, "ci95": self.ci95, "seconds": round(self.seconds, 3),
                "prepare_seconds": round(self.prepare_seconds, 3),
                "episode_accuracies": [round(float(a), 6) for a in self.accuracies]}


def draw_episodes(labels: np.ndarray, *, ways: int, shots: int, queries: int, episodes: int,
                  seed: int, class_names: Sequence[str] | None = None) -> list[Step]:
    """``episodes`` seeded episodes over ``labels``; an episode the data cannot fill (too few
    classes, or a class with fewer than shots + queries items) is an error naming them."""
    plan = EpisodicPlan(ways=ways, shots=shots, queries=queries, episodes=episodes)
    return plan.sample(np.asarray(labels), seed, 0, episodes, names=class_names)


def run_episodes(features: np.ndarray, labels: np.ndarray, *, method: str | EpisodeMethod,
                 ways: int = 5, shots: int = 1, queries: int = 15, episodes: int = 600,
                 seed: int = 0, class_names: Sequence[str] | None = None,
                 keep_predictions: int = 0) -> EpisodeResult:
    """Evaluate ``method`` (a name of :data:`FEATURE_METHODS` or a callable) on seeded
    episodes of ``features``/``labels``; ``keep_predictions`` keeps the query predictions of
    that many first episodes (for a report's galleries)."""
    method = canonical(method) if isinstance(method, str) else method
    if isinstance(method, str) and method not in FEATURE_METHODS:
        raise ValueError(f"unknown few-shot method {method!r}; choose from "
                         f"{', '.join(FEATURE_METHODS)}")
    fn = FEATURE_METHODS[method] if isinstance(method, str) else method
    name = method if isinstance(method, str) else getattr(method, "__name__", "method")
    x = np.asarray(features)
    eps = draw_episodes(labels, ways=ways, shots=shots, queries=queries, episodes=episodes,
                        seed=seed, class_names=class_names)
    t0 = time.perf_counter()
    accs = np.empty(len(eps))
    preds: list[np.ndarray] = []
    for i, ep in enumerate(eps):
        s, q = ep["support"], ep["query"]
        scores = fn(x[list(s.indices)], np.asarray(s.labels), x[list(q.indices)], ways)
        pred = np.asarray(scores).argmax(axis=1)
        accs[i] = float((pred == np.asarray(q.labels)).mean())
        if i < keep_predictions:
            preds.append(pred)
    return EpisodeResult(name, ways, shots, queries, accs, time.perf_counter() - t0, eps,
                         preds)
