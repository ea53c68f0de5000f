"""``--bn auto`` chooses the trunk's BatchNorm statistics on validation: the rule's pieces, and
a real joint fit (two tasks whose inputs have opposite statistics: Fashion-MNIST and its
negative) where the kept mode is the validation-best and shuffled test labels change nothing."""

from __future__ import annotations

import numpy as np
import pytest

from transferkit.data import Dataset
from transferkit.multitask import MultiTaskLearner
from transferkit.multitask.bnselect import bn_candidates, pick_bn
from transferkit.multitask.taskbn import TaskStatistics


def test_the_pick_is_the_validation_best_not_a_fixed_rule() -> None:
    assert pick_bn({"task": 0.80, "frozen": 0.85, "shared": 0.90}, True)[0] == "shared"
    assert pick_bn({"task": 0.80, "frozen": 0.85, "shared": 0.70}, True)[0] == "frozen"
    assert pick_bn({"task": 0.85, "frozen": 0.85, "shared": 0.85}, True)[0] == "task"  # tie
    mode, why = pick_bn({"task": None, "shared": None}, False)
    assert mode == "task" and "no validation data" in why
    assert pick_bn({"task": 0.5, "shared": None}, False)[0] == "task"


def test_candidates() -> None:
    assert bn_candidates("auto", pretrained=True, has_batchnorm=True) == \
        ["task", "frozen", "shared"]
    assert bn_candidates("auto", pretrained=False, has_batchnorm=True) == ["task", "shared"]
    assert bn_candidates("auto", pretrained=True, has_batchnorm=False) == ["frozen"]
    assert bn_candidates("shared", pretrained=True, has_batchnorm=True) == ["shared"]
    with pytest.raises(ValueError, match="bn 'mixed'"):
        bn_candidates("mixed", pretrained=True, has_batchnorm=True)


EPOCHS, LR = 10, 3e-3


def _fit(train: dict[str, Dataset], test: dict[str, Dataset], bn: str, logs: list[str]):
    from transferkit.backbones.cnn import ScratchCNN

    return MultiTaskLearner(ScratchCNN(32, widths=(8, 16), seed=0), bn=bn, epochs=EPOCHS,
                            seed=0, lr=LR, cache=False, baselines=False,
                            log=logs.append).fit(train, test)


def test_auto_keeps_the_validation_best_mode_and_never_reads_test_labels(two_domains) -> None:
    train, test = two_domains
    logs: list[str] = []
    fit = _fit(train, test, "auto", logs)
    assert set(fit.bn_scores) == {"task", "shared"}  # from scratch: no pretrained statistics
    best = max(fit.bn_scores.values())
    assert fit.bn_scores[fit.bn] == best
    assert fit.bn == next(m for m in ("task", "shared") if fit.bn_scores[m] == best)
    # opposite input statistics: one set of running statistics serves neither domain
    # (measured: task 0.470 vs shared 0.377 mean validation accuracy; chance 0.1)
    assert fit.bn == "task" and fit.bn_scores["task"] > 0.35
    # the kept joint model is the one scored: its mean validation accuracy is the pick's
    vals = [r.val_accuracy for r in fit.joint.values()]
    assert sum(vals) / len(vals) == pytest.approx(fit.bn_scores[fit.bn])
    assert isinstance(fit.net.task_bn, TaskStatistics) == (fit.bn == "task")
    assert any(line.startswith("bn auto: mean validation accuracy") for line in logs)
    # shuffled test labels: the same scores, the same pick (the test accuracy does change)
    rng = np.random.default_rng(1)
    shuffled = {t: Dataset(items=list(d.items), labels=list(rng.permutation(d.labels)),
                           class_names=d.class_names, source=d.source) for t, d in test.items()}
    again = _fit(train, shuffled, "auto", [])
    assert again.bn == fit.bn and again.bn_scores == fit.bn_scores
    assert [again.joint[t].val_accuracy for t in train] == vals
    assert any(again.joint[t].test_accuracy != fit.joint[t].test_accuracy for t in train)
    # the kept mode trained alone (a fixed --bn) gives the same joint model
    fixed = _fit(train, test, fit.bn, [])
    assert [fixed.joint[t].val_accuracy for t in train] == vals
    assert fixed.bn_scores == {}
