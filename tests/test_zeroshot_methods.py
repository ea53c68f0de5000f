"""Zero-shot methods and generalised zero-shot metrics on toy problems with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transferkit.zeroshot import (
    DAP,
    ESZSL,
    RankingMap,
    RidgeMap,
    choose_gamma,
    gzsl_metrics,
    per_class_accuracy,
)


def _toy(seed: int = 0, n: int = 60):
    """8 classes with 6 binary attributes; features = attribute pattern mixed linearly, +
    noise. Classes 0..5 seen, 6..7 unseen."""
    rng = np.random.default_rng(seed)
    attrs = np.array([[1, 0, 0, 1, 0, 1], [0, 1, 0, 1, 1, 0], [0, 0, 1, 0, 1, 1],
                      [1, 1, 0, 0, 0, 1], [0, 1, 1, 1, 0, 0], [1, 0, 1, 0, 1, 0],
                      [1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=float)
    mix = rng.normal(size=(6, 20))
    y = np.repeat(np.arange(8), n)
    x = attrs[y] @ mix + 0.3 * rng.normal(size=(len(y), 20))
    return x, y, attrs


def test_eszsl_is_its_closed_form() -> None:
    x, y, attrs = _toy()
    seen = y < 6
    m = ESZSL(gamma=0.5, lam=2.0).fit(x[seen], y[seen], attrs[:6])
    X = m.scaler_.transform(x[seen]).T
    S = attrs[:6].T
    Y = np.where(np.eye(6)[y[seen]] > 0, 1.0, -1.0)
    V = np.linalg.inv(X @ X.T + 0.5 * np.eye(20)) @ X @ Y @ S.T @ np.linalg.inv(
        S @ S.T + 2.0 * np.eye(6))
    np.testing.assert_allclose(m.V_, V, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("method", [ESZSL(), DAP(), RidgeMap(alpha=0.1),
                                    RankingMap(epochs=200)])
def test_methods_recognise_unseen_classes_from_their_attributes(method) -> None:
    x, y, attrs = _toy()
    seen = y < 6
    method.fit(x[seen], y[seen], attrs[:6])
    unseen = ~seen
    pred = 6 + method.scores(x[unseen], attrs[6:]).argmax(1)
    assert (pred == y[unseen]).mean() > 0.9  # chance 0.5
    if method.projection() is not None:  # its saved head scores the same
        head = method.head(attrs, np.zeros(8))
        with torch.inference_mode():
            p = head(torch.as_tensor(x, dtype=torch.float32)).numpy()
        np.testing.assert_array_equal(p.argmax(1), method.scores(x, attrs).argmax(1))


def test_gzsl_metrics_by_hand() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])
    scores = np.array([[3, 0, 2], [3, 0, 0], [0, 3, 2.5], [0, 1, 2], [1, 0, 2], [2, 0, 1.5]],
                      dtype=float)
    m = gzsl_metrics(scores, y, seen=[0, 1], unseen=[2])
    # seen: class 0 2/2, class 1 1/2 -> 0.75; unseen: class 2 1/2 -> 0.5
    assert m["seen"] == pytest.approx(0.75) and m["unseen"] == pytest.approx(0.5)
    assert m["H"] == pytest.approx(2 * 0.75 * 0.5 / 1.25)
    assert m["zsl_unseen"] == pytest.approx(1.0)  # among unseen classes only: always right
    cal = gzsl_metrics(scores, y, seen=[0, 1], unseen=[2], gamma=1.0)
    assert cal["unseen"] == pytest.approx(1.0)
    assert per_class_accuracy(y, np.array([0, 1, 1, 1, 2, 0]), [0, 1, 2]) == pytest.approx(2 / 3)


def test_calibration_is_chosen_on_validation_and_helps_unseen() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2, 3], 50)
    scores = rng.normal(size=(200, 4)) + 2.0 * np.eye(4)[y]
    scores[:, :2] += 1.5  # the seen classes 0, 1 are favoured
    gamma = choose_gamma(scores, y, seen=[0, 1], unseen=[2, 3])
    before = gzsl_metrics(scores, y, [0, 1], [2, 3])
    after = gzsl_metrics(scores, y, [0, 1], [2, 3], gamma)
    assert 0.5 < gamma < 2.5 and after["H"] > before["H"] + 0.1
