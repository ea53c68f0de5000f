"""Few-shot episodes on features: the sampler, prototypes by hand, confidence intervals,
bad input."""

from __future__ import annotations

import numpy as np
import pytest

from transferkit.errors import DataError
from transferkit.fewshot import (
    draw_episodes,
    protonet_cosine,
    protonet_euclidean,
    prototypes,
    run_episodes,
)


def _labels(per_class: int = 20, classes: int = 8) -> np.ndarray:
    return np.repeat(np.arange(classes), per_class)


def test_episodes_keep_support_and_query_apart_and_cover_classes_evenly() -> None:
    labels = _labels()
    eps = draw_episodes(labels, ways=5, shots=2, queries=3, episodes=400, seed=0)
    seen = np.zeros(8)
    for ep in eps:
        s, q = ep["support"], ep["query"]
        assert not set(s.indices) & set(q.indices)
        assert len(s.indices) == 10 and len(q.indices) == 15
        # local labels 0..4 map to one original class each, the same in support and query
        local = {}
        for idx, lab in [*zip(s.indices, s.labels, strict=True),
                         *zip(q.indices, q.labels, strict=True)]:
            local.setdefault(lab, set()).add(int(labels[idx]))
        assert sorted(local) == list(range(5)) and all(len(v) == 1 for v in local.values())
        for v in local.values():
            seen[next(iter(v))] += 1
    assert seen.max() - seen.min() <= 2  # successive class permutations: even coverage
    again = draw_episodes(labels, ways=5, shots=2, queries=3, episodes=400, seed=0)
    assert [e["query"].indices for e in again] == [e["query"].indices for e in eps]


def test_prototypes_match_a_hand_computation() -> None:
    support = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 4.0]])
    labels = np.array([0, 0, 1, 1])
    np.testing.assert_allclose(prototypes(support, labels, 2), [[2.0, 0.0], [0.0, 3.0]])
    query = np.array([[2.0, 1.0]])
    np.testing.assert_allclose(protonet_euclidean(support, labels, query, 2), [[-1.0, -8.0]])
    np.testing.assert_allclose(protonet_cosine(support, labels, query, 2),
                               [[2 / np.sqrt(5), 1 / np.sqrt(5)]])


def test_separable_features_score_high_and_random_ones_at_chance() -> None:
    rng = np.random.default_rng(0)
    labels = _labels(30, 10)
    centres = rng.normal(size=(10, 16)) * 3
    good = centres[labels] + rng.normal(size=(len(labels), 16))
    noise = rng.normal(size=(len(labels), 16))
    for method in ("protonet", "protonet-euclidean", "probe"):
        r = run_episodes(good, labels, method=method, ways=5, shots=1, episodes=100, seed=0)
        assert r.mean > 0.9, (method, r.mean)
        bad = run_episodes(noise, labels, method=method, ways=5, shots=1, episodes=100, seed=0)
        assert abs(bad.mean - 0.2) < 0.05, (method, bad.mean)
        assert 0 < bad.ci95 < 0.05
        assert r.summary()["episodes"] == 100


def test_an_episode_larger_than_the_data_names_the_class() -> None:
    labels = np.r_[np.zeros(20, int), np.ones(3, int), np.full(20, 2)]
    with pytest.raises(DataError, match=r"'sandal': 3"):
        draw_episodes(labels, ways=3, shots=1, queries=5, episodes=2, seed=0,
                      class_names=["bag", "sandal", "shirt"])
    with pytest.raises(DataError, match="needs 5 classes"):
        draw_episodes(_labels(20, 3), ways=5, shots=1, queries=5, episodes=2, seed=0)
    with pytest.raises(ValueError, match="unknown few-shot method"):
        run_episodes(np.zeros((60, 2)), _labels(20, 3), method="maml-ish", ways=2)
