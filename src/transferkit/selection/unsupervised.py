"""Label-free criteria for choosing a model on unlabelled target data.

- :func:`information_maximization`: high when predictions are confident (low mean entropy)
  and diverse (high entropy of the mean prediction). The default epoch choice of the
  self-training adaptation methods: on a development shift (MNIST -> scikit-learn digits,
  ``benchmarks/results/adapt_select_dev.md``) the self-training epoch it picked scored 37
  points above the one source-validation accuracy picked (2 seeds); for the alignment
  methods the two choices differed by -4 to +5 points.
- :func:`soft_neighborhood_density`: offered for comparison only; it preferred near-uniform
  early epochs and lost up to 23 points in the same measurement, so it is never a default.
"""

from __future__ import annotations

import math

import numpy as np


def _entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    return -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis=axis)


def prediction_entropy(probs: np.ndarray) -> float:
    """Mean entropy of the predictions, divided by log K (0 = all certain, 1 = uniform)."""
    p = _check(probs)
    return float(_entropy(p).mean() / math.log(p.shape[1]))


def prediction_diversity(probs: np.ndarray) -> float:
    """Entropy of the mean prediction, divided by log K (0 = one class for everything,
    1 = classes predicted equally often)."""
    p = _check(probs)
    return float(_entropy(p.mean(axis=0)) / math.log(p.shape[1]))


def information_maximization(probs: np.ndarray) -> float:
    """Diversity minus mean entropy, both divided by log K: in [-1, 1], higher is better;
    near 0 when predictions collapse onto one class or stay uncertain."""
    return prediction_diversity(probs) - prediction_entropy(probs)


def soft_neighborhood_density(probs: np.ndarray, temperature: float = 0.05) -> float:
    """Soft neighbourhood density (Saito et al. 2021): entropy of each item's softmax
    similarity to the other items' predictions, averaged. Not a default (see module)."""
    p = _check(probs)
    z = p / np.linalg.norm(p, axis=1, keepdims=True).clip(1e-12)
    sim = z @ z.T
    np.fill_diagonal(sim, -np.inf)
    sim = sim / temperature
    sim -= sim.max(axis=1, keepdims=True)
    e = np.exp(sim)
    q = e / e.sum(axis=1, keepdims=True)
    return float(_entropy(q).mean())


def _check(probs: np.ndarray) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise ValueError(f"expected probabilities of shape [items, classes >= 2], got "
                         f"{p.shape}")
    return p
