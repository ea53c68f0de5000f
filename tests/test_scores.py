"""Transferability scores: LogME's evidence against the direct D x D computation (N > D and
N < D), each score ranking informative features above noise, bad input refused."""

from __future__ import annotations

import numpy as np
import pytest

from transferkit.errors import DataError
from transferkit.selection.scores import (
    _logme_column,
    hscore,
    leep,
    logme,
    logme_evidence,
    nce,
    transrate,
)


@pytest.mark.parametrize("n,d", [(80, 12), (15, 40)])
def test_logme_evidence_is_exact_for_wide_and_tall_features(n: int, d: int) -> None:
    rng = np.random.default_rng(0)
    f = rng.normal(size=(n, d))
    t = (f @ rng.normal(size=d) + 0.5 * rng.normal(size=n) > 0).astype(float)
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    keep = s > s.max() * 1e-10
    per_item, alpha, beta = _logme_column(u[:, keep], s[keep] ** 2, t, n, d)
    direct = logme_evidence(f, t, alpha, beta)
    assert per_item * n == pytest.approx(direct, rel=1e-8, abs=1e-8)
    if n > d:  # an interior maximum: moving alpha or beta does not raise the evidence
        for a, b in ((alpha * 1.5, beta), (alpha / 1.5, beta), (alpha, beta * 1.5),
                     (alpha, beta / 1.5)):
            assert logme_evidence(f, t, a, b) <= direct + 1e-6
    else:  # the reference code's dropped -(D-N)/2 log(alpha) would add this much
        assert (d - n) / 2 * np.log(alpha) > 1.0


def _data(seed: int = 0, n: int = 200, k: int = 4):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), n // k)
    good = np.eye(k)[y] @ rng.normal(size=(k, 32)) * 2 + rng.normal(size=(len(y), 32))
    noise = rng.normal(size=(len(y), 32))
    return good, noise, y


@pytest.mark.parametrize("score", [logme, hscore, transrate])
def test_feature_scores_rank_informative_features_above_noise(score) -> None:
    good, noise, y = _data()
    assert score(good, y) > score(noise, y)


def test_source_scores_rank_an_aligned_source_above_a_random_one() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 50)
    aligned = np.eye(6)[np.where(rng.random(200) < 0.8, y, rng.integers(0, 6, 200))] + 0.05
    random_p = rng.dirichlet(np.ones(6), size=200)
    for score in (leep, nce):
        assert score(aligned, y) > score(random_p, y) + 0.3


def test_bad_input_is_refused_never_nan() -> None:
    good, _, y = _data()
    with pytest.raises(DataError, match="at least two classes"):
        logme(good, np.zeros(len(y)))
    with pytest.raises(DataError, match="more items"):
        hscore(good[[0, 60, 120]], y[[0, 60, 120]])
    bad = good.copy()
    bad[3, 2] = np.nan
    with pytest.raises(DataError, match="non-finite"):
        transrate(bad, y)
