"""The domain-adaptation losses and label-free scores, checked exactly on small tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from transferkit.losses import (
    CoralLoss,
    DomainAdversarialLoss,
    EMATeacher,
    MMDLoss,
    dann_lambda,
    grad_reverse,
    pseudo_label_loss,
)
from transferkit.selection import information_maximization, prediction_diversity
from transferkit.strategies.adapt_features import (
    TrAdaBoost,
    coral_transform,
    density_ratio_weights,
)


def _feats(seed: int, n: int = 24, d: int = 6, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) + shift


def test_gradient_reversal_flips_and_scales_exactly() -> None:
    x = _feats(0).requires_grad_(True)
    w = _feats(1)
    (grad_reverse(x, 0.37) * w).sum().backward()
    torch.testing.assert_close(x.grad, -0.37 * w)
    y = _feats(2)
    assert torch.equal(grad_reverse(y, 5.0), y)  # forward: the identity


def test_dann_lambda_ramps_from_zero_to_one() -> None:
    assert dann_lambda(0.0) == 0.0
    assert dann_lambda(1.0) == pytest.approx(2 / (1 + np.exp(-10)) - 1)
    values = [dann_lambda(p / 10) for p in range(11)]
    assert values == sorted(values) and values[-1] > 0.999


def test_domain_loss_gradient_reaches_the_features_reversed() -> None:
    """The bug of a softmax over one unit (no gradient) would fail this."""
    torch.manual_seed(0)
    loss = DomainAdversarialLoss(6, hidden=16, dropout=0.0)
    fs, ft = _feats(0).requires_grad_(True), _feats(1, shift=2.0).requires_grad_(True)
    out = loss(fs, ft, coeff=1.0)
    out["loss"].backward()
    g_rev = fs.grad.clone()
    assert g_rev.abs().sum() > 1e-4 and 0.0 <= float(out["domain_acc"]) <= 1.0
    fs.grad = None
    loss(fs, ft, coeff=0.0)["loss"].backward()
    assert fs.grad.abs().sum() == 0  # coeff 0: nothing reaches the features
    # without reversal the features' gradient is the opposite one
    fs2 = fs.detach().clone().requires_grad_(True)
    feats = torch.cat([fs2, ft.detach()])
    logits = loss.classifier(feats).squeeze(1)
    truth = torch.cat([torch.ones(len(fs2)), torch.zeros(len(ft))])
    per = nn.functional.binary_cross_entropy_with_logits(logits, truth, reduction="none")
    (0.5 * (per[:len(fs2)].mean() + per[len(fs2):].mean())).backward()
    torch.testing.assert_close(g_rev, -fs2.grad)


def test_coral_is_zero_for_equal_statistics_and_positive_otherwise() -> None:
    coral = CoralLoss()
    x = _feats(0)
    assert float(coral(x, x.clone())["loss"]) == pytest.approx(0.0, abs=1e-10)
    # the same covariance after a shift of the mean: CORAL only sees second-order statistics
    assert float(coral(x, x + 3.0)["loss"]) == pytest.approx(0.0, abs=1e-9)
    assert float(coral(x, 3.0 * _feats(1))["loss"]) > 0.1


def test_mmd_is_zero_for_identical_batches_and_grows_with_the_shift() -> None:
    mmd = MMDLoss()
    x = _feats(0)
    assert float(mmd(x, x.clone())["loss"]) == pytest.approx(0.0, abs=1e-6)
    near, far = (float(mmd(x, _feats(1, shift=s))["loss"]) for s in (0.5, 3.0))
    assert 0.0 < near < far


def test_source_weights_select_samples_exactly() -> None:
    """A weight of 0 removes a source item from every loss (weights come free)."""
    fs, ft = _feats(0), _feats(1, shift=1.0)
    w = torch.zeros(len(fs))
    w[:10] = 1.0
    for loss in (CoralLoss(), MMDLoss()):
        torch.testing.assert_close(loss(fs, ft, w)["loss"], loss(fs[:10], ft)["loss"],
                                   rtol=1e-5, atol=1e-6)
    torch.manual_seed(0)
    dann = DomainAdversarialLoss(6, hidden=8, dropout=0.0)
    torch.testing.assert_close(dann(fs, ft, w)["loss"], dann(fs[:10], ft)["loss"])


def test_pseudo_labels_use_only_confident_items() -> None:
    teacher = torch.tensor([[0.97, 0.03], [0.6, 0.4], [0.05, 0.95]])
    student = torch.tensor([[2.0, 0.0], [0.0, 2.0], [0.0, 1.0]])
    out = pseudo_label_loss(student, teacher, threshold=0.9)
    assert float(out["mask_rate"]) == pytest.approx(2 / 3)
    ce = nn.functional.cross_entropy(student, torch.tensor([0, 0, 1]), reduction="none")
    assert float(out["loss"]) == pytest.approx(float((ce[0] + ce[2]) / 3))


def test_ema_teacher_follows_the_network() -> None:
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    ema = EMATeacher(net, decay=0.9)
    before = ema.net.weight.clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)
    torch.testing.assert_close(ema.net.weight, 0.9 * before + 0.1 * net.weight)
    assert not any(p.requires_grad for p in ema.parameters())


def test_information_maximization_separates_good_from_collapsed_predictions() -> None:
    eye = np.eye(4)[np.arange(40) % 4] * 0.97 + 0.01  # confident, every class
    collapsed = np.tile([0.97, 0.01, 0.01, 0.01], (40, 1))  # everything one class
    uncertain = np.full((40, 4), 0.25)
    assert information_maximization(eye) > 0.8
    assert abs(information_maximization(collapsed)) < 1e-9  # confident, but one class
    assert prediction_diversity(collapsed) < 0.2
    assert abs(information_maximization(uncertain)) < 1e-9


def test_density_ratio_weights_favour_target_like_source_items() -> None:
    rng = np.random.default_rng(0)
    source = rng.normal(size=(400, 2))
    target = rng.normal(size=(400, 2)) + np.array([1.5, 0.0])
    w, info = density_ratio_weights(source, target, seed=0)
    assert w.mean() == pytest.approx(1.0)
    near = source[:, 0] > 1.0
    assert w[near].mean() > 3 * w[~near].mean()
    assert 0.6 < info["domain_classifier_accuracy"] < 0.95


def test_coral_transform_gives_the_source_the_target_covariance() -> None:
    rng = np.random.default_rng(0)
    source = rng.normal(size=(2000, 3)) * np.array([1.0, 2.0, 0.5])
    target = rng.normal(size=(2000, 3)) @ np.array([[1.0, 0.5, 0], [0, 1.0, 0], [0, 0, 3.0]])
    moved = coral_transform(source, target, eps=1e-6)
    np.testing.assert_allclose(np.cov(moved, rowvar=False), np.cov(target, rowvar=False),
                               atol=0.05)
    np.testing.assert_allclose(moved.mean(0), target.mean(0), atol=1e-3)


def test_tradaboost_head_matches_its_vote_and_learns_the_target_rule() -> None:
    """Source labels follow x0 > 0 where x1 > 0 but the opposite rule elsewhere; the target
    lives where x1 < 0: the boosting weights down the source items that disagree."""
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(600, 2))
    ys = np.where(xs[:, 1] > 0, xs[:, 0] > 0, xs[:, 0] < 0).astype(int)
    xt = rng.normal(size=(30, 2)) - np.array([0.0, 1.0])
    yt = (xt[:, 0] < 0).astype(int)
    test = rng.normal(size=(500, 2)) - np.array([0.0, 1.0])
    y_test = (test[:, 0] < 0).astype(int)
    boost = TrAdaBoost(rounds=20, seed=0).fit(xs, ys, xt, yt, 2)
    acc = float((boost.predict_proba(test).argmax(1) == y_test).mean())
    from sklearn.linear_model import LogisticRegression

    pooled = LogisticRegression().fit(np.vstack([xs, xt]), np.r_[ys, yt])
    target_only = LogisticRegression().fit(xt, yt)
    assert acc > 0.95 and acc > float((pooled.predict(test) == y_test).mean()) + 0.2, acc
    assert acc > float((target_only.predict(test) == y_test).mean())
    with torch.inference_mode():
        head_p = boost.head()(torch.as_tensor(test, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(head_p, boost.predict_proba(test), atol=1e-4)


def test_coral_transform_with_more_dimensions_than_items_equals_the_full_formula() -> None:
    """Above n dimensions the transform runs in the data's span; it must equal the d x d
    whitening and re-colouring exactly."""
    from sklearn.preprocessing import StandardScaler

    from transferkit.strategies.adapt_features import _sqrtm

    rng = np.random.default_rng(0)
    xs = rng.normal(size=(30, 50)) * rng.uniform(0.5, 2.0, 50)
    xt = rng.normal(size=(25, 50)) @ rng.normal(size=(50, 50)) * 0.3
    scale = StandardScaler().fit(np.vstack([xs, xt]))
    s, t = scale.transform(xs), scale.transform(xt)
    cs, ct = np.cov(s, rowvar=False) + np.eye(50), np.cov(t, rowvar=False) + np.eye(50)
    full = (s - s.mean(0)) @ _sqrtm(cs, inverse=True) @ _sqrtm(ct) + t.mean(0)
    np.testing.assert_allclose(coral_transform(xs, xt), scale.inverse_transform(full),
                               atol=1e-5)
