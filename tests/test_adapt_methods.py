"""The adaptation-method contract: every declared method runs on each path it declares and
changes the model there (a method that silently does nothing on a path fails), and is
refused, by name, on a path it does not declare. Plus the CMD loss itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transferkit.data import Dataset
from transferkit.data.samples import digits_to_mnist
from transferkit.losses import CMDLoss
from transferkit.strategies import DomainAdaptClassifier
from transferkit.strategies.adapt_methods import (
    ADAPT_METHODS,
    AdaptMethod,
    check_path,
    method_help,
    parse_method,
    register_method,
    select_help,
)


@pytest.fixture(scope="module")
def shift() -> tuple[Dataset, Dataset, Dataset]:
    """160 source digits, 160 unlabelled MNIST digits, 40 labelled MNIST digits."""
    source, target, test = digits_to_mnist(seed=0)
    pick = np.random.default_rng(0).permutation(len(source))
    return source.subset(pick[:160]), target.subset(np.arange(160)), test.subset(np.arange(40))


def _fit(method: str, shift, freeze: str | None) -> DomainAdaptClassifier:
    source, target, labeled = shift
    est = DomainAdaptClassifier(backbone="lenet", method=method, epochs=1, seed=0,
                                cache=False, progress=False, baseline=False, freeze=freeze,
                                threshold=0.01, batch_size=32)
    extra = {"X_target_labeled": labeled} if ADAPT_METHODS[method].needs_target_labels \
        else {}
    return est.fit(source, X_target=target, **extra)


def _weights(est: DomainAdaptClassifier) -> np.ndarray:
    state = est.model_.head.state_dict()
    return np.concatenate([v.detach().cpu().numpy().ravel().astype(np.float64)
                           for v in state.values()])


@pytest.mark.parametrize("freeze", [None, "all"], ids=["network", "features"])
def test_every_method_changes_the_model_on_its_paths_and_is_refused_elsewhere(
        shift, freeze) -> None:
    features = freeze == "all"
    base = _weights(_fit("source-only", shift, freeze))
    for name, m in ADAPT_METHODS.items():
        declared = m.features if features else m.network
        if name == "source-only":
            continue
        if not declared and features:
            with pytest.raises(ValueError, match=name):
                _fit(name, shift, freeze)
            continue
        if not declared:  # a frozen-feature method: refused on the network path by name
            with pytest.raises(ValueError, match=name):
                check_path(name, features=False)
            continue
        w = _weights(_fit(name, shift, freeze))
        assert w.shape != base.shape or not np.allclose(w, base, atol=1e-6), (
            f"{name} left the {'frozen-feature' if features else 'network'} model "
            f"unchanged: it does nothing on a path it declares")


def test_a_feature_path_alignment_must_say_how() -> None:
    """An alignment declared on the frozen-feature path without a transform is refused at
    registration (it would silently train source-only there)."""
    with pytest.raises(ValueError, match="transform"):
        register_method(AdaptMethod("cmd-frozen", "align", "x", features=True,
                                    loss="transferkit.losses.cmd:CMDLoss"))
    assert "cmd-frozen" not in ADAPT_METHODS


def test_the_help_lists_every_method() -> None:
    assert all(name in method_help() for name in ADAPT_METHODS)


def test_a_method_declares_a_known_epoch_selection() -> None:
    """The selection a method declares is one of SELECT (checked at registration), a
    combination takes ``im`` from any part declaring it, and the --select help names the
    methods that declare it."""
    with pytest.raises(ValueError, match="select 'target-val'"):
        register_method(AdaptMethod("x-select", "align", "x", loss="transferkit.losses."
                                    "cmd:CMDLoss", select="target-val"))
    assert "x-select" not in ADAPT_METHODS
    assert parse_method("dann")["select"] == "source-val"
    assert parse_method("self-train")["select"] == parse_method("dann+self-train")["select"] \
        == "im"
    im = [m.name for m in ADAPT_METHODS.values() if m.select == "im"]
    assert im and all(name in select_help() for name in im)


def test_cmd_matches_its_formula_and_vanishes_on_equal_batches() -> None:
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(50, 4, generator=g), 1.5 * torch.randn(60, 4, generator=g) + 0.3
    got = float(CMDLoss(moments=3)(s, t)["loss"])
    sn, tn = s.numpy().astype(np.float64), t.numpy().astype(np.float64)
    want = np.linalg.norm(sn.mean(0) - tn.mean(0)) + sum(
        np.linalg.norm(((sn - sn.mean(0)) ** k).mean(0) - ((tn - tn.mean(0)) ** k).mean(0))
        for k in (2, 3))
    assert got == pytest.approx(want, rel=1e-4)
    assert float(CMDLoss()(s, s.clone())["loss"]) == pytest.approx(0.0, abs=1e-5)
    # source weights: weighting the source onto its first 25 rows = those rows alone
    w = torch.cat([torch.ones(25), torch.zeros(25)])
    assert float(CMDLoss(moments=3)(s, t, w)["loss"]) == pytest.approx(
        float(CMDLoss(moments=3)(s[:25], t)["loss"]), rel=1e-4)


class _Wreck(AdaptMethod):
    """A frozen-feature 'method' that destroys the features (every source item the same)."""

    def feature_transform(self):  # type: ignore[override]
        return lambda fs, ft: np.zeros_like(fs)


def test_the_guard_replaces_a_wrecked_frozen_feature_method_by_source_only(
        shift, monkeypatch) -> None:
    """The frozen-feature path has the network path's guard: a method whose target
    predictions collapse is flagged and the source-only head is kept (negative control:
    without the baseline the wreck is the model)."""
    monkeypatch.setitem(ADAPT_METHODS, "wreck", _Wreck("wreck", "align", "x", network=False,
                                                       features=True, transform="x:y"))
    source, target, test = shift

    def fit(baseline: bool) -> DomainAdaptClassifier:
        return DomainAdaptClassifier(backbone="lenet", method="wreck", freeze="all", seed=0,
                                     cache=False, progress=False, baseline=baseline
                                     ).fit(source, X_target=target)

    guarded, bare = fit(True), fit(False)
    assert guarded.kept_ == "source-only" and guarded.flags_, guarded.flags_
    assert bare.kept_ == "wreck" and not bare.flags_
    base = _fit("source-only", shift, "all")
    np.testing.assert_allclose(_weights(guarded), _weights(base), atol=1e-6)
    assert len(np.unique(bare.predict_proba(test).argmax(1))) == 1  # the wreck collapsed

