"""classification_metrics against hand-computed values; write_json is atomic."""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import f1_score

from transferkit.errors import RunError
from transferkit.evaluation import classification_metrics, write_json

NAMES = ["cat", "dog", "eel"]
# Hand-made case. Rows = true class, columns = predicted class:
#   true cat: cat 1, dog 2        -> precision(cat) 1/2, recall(cat) 1/3, F1 2/5
#   true dog: dog 2               -> precision(dog) 2/4, recall(dog) 1,   F1 2/3
#   true eel: cat 1, eel 3        -> precision(eel) 3/3, recall(eel) 3/4, F1 6/7
Y_TRUE = [0, 0, 0, 1, 1, 2, 2, 2, 2]
Y_PRED = [0, 1, 1, 1, 1, 2, 0, 2, 2]


def _plain(obj: Any) -> None:
    """Assert ``obj`` holds only plain JSON types (no numpy scalars or arrays)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert type(k) is str
            _plain(v)
    elif isinstance(obj, list):
        for v in obj:
            _plain(v)
    else:
        assert obj is None or type(obj) in (str, int, float, bool), (obj, type(obj))


def _metrics(*args: Any) -> dict[str, Any]:
    """classification_metrics, failing the test on any warning it emits."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = classification_metrics(*args)
    _plain(m)
    json.dumps(m, allow_nan=False)
    return m


def test_hand_computed_multiclass() -> None:
    m = _metrics(Y_TRUE, Y_PRED, None, NAMES)
    assert m["n_samples"] == 9
    assert m["class_names"] == NAMES
    assert m["confusion_matrix"] == [[1, 2, 0], [0, 2, 0], [1, 0, 3]]  # rows = true
    assert m["accuracy"] == pytest.approx(6 / 9)
    assert m["balanced_accuracy"] == pytest.approx((1 / 3 + 1 + 3 / 4) / 3)
    assert m["macro_precision"] == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)
    assert m["macro_recall"] == pytest.approx((1 / 3 + 1 + 3 / 4) / 3)
    assert m["macro_f1"] == pytest.approx((2 / 5 + 2 / 3 + 6 / 7) / 3)
    assert m["weighted_f1"] == pytest.approx((3 * 2 / 5 + 2 * 2 / 3 + 4 * 6 / 7) / 9)
    pc = m["per_class"]
    assert list(pc) == NAMES
    assert pc["cat"] == {"precision": pytest.approx(0.5), "recall": pytest.approx(1 / 3),
                         "f1": pytest.approx(0.4), "support": 3, "roc_auc": None}
    assert pc["dog"]["precision"] == pytest.approx(0.5) and pc["dog"]["recall"] == 1.0
    assert pc["eel"]["f1"] == pytest.approx(6 / 7) and pc["eel"]["support"] == 4
    assert m["roc_auc_ovr_macro"] is None and m["log_loss"] is None  # proba=None


def test_binary_auc_and_log_loss() -> None:
    y = np.array([0, 0, 1, 1, 1])
    p1 = np.array([0.1, 0.6, 0.4, 0.8, 0.9])
    proba = np.stack([1 - p1, p1], axis=1)
    m = _metrics(y, proba.argmax(1), proba, ["neg", "pos"])
    # positives 0.4, 0.8, 0.9 vs negatives 0.1, 0.6: 5 of 6 pairs ranked right
    assert m["roc_auc_ovr_macro"] == pytest.approx(5 / 6)
    assert m["per_class"]["pos"]["roc_auc"] == pytest.approx(5 / 6)
    assert m["per_class"]["neg"]["roc_auc"] == pytest.approx(5 / 6)
    p_true = [0.9, 0.4, 0.4, 0.8, 0.9]
    assert m["log_loss"] == pytest.approx(-sum(map(math.log, p_true)) / 5)
    assert m["confusion_matrix"] == [[1, 1], [1, 2]]
    assert m["accuracy"] == pytest.approx(3 / 5)


def test_absent_class_gets_no_auc_and_the_macro_auc_uses_the_others() -> None:
    y = np.array([0, 0, 1, 1, 0, 1])
    proba = np.array([[0.7, 0.2, 0.1], [0.5, 0.1, 0.4], [0.2, 0.3, 0.5],
                      [0.1, 0.8, 0.1], [0.3, 0.4, 0.3], [0.25, 0.6, 0.15]])
    pred = proba.argmax(1)  # predicts the absent class once
    m = _metrics(y, pred, proba, NAMES)
    assert m["per_class"]["eel"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0,
                                     "roc_auc": None}
    assert m["per_class"]["cat"]["roc_auc"] == pytest.approx(1.0)
    assert m["per_class"]["dog"]["roc_auc"] == pytest.approx(8 / 9)
    assert m["roc_auc_ovr_macro"] == pytest.approx((1 + 8 / 9) / 2)
    assert m["confusion_matrix"][2] == [0, 0, 0] and m["confusion_matrix"][1] == [0, 2, 1]
    # macro averages follow scikit-learn: classes seen in y_true or y_pred
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    # a class that is neither true nor predicted anywhere does not change the averages
    m4 = _metrics(y, pred, np.c_[proba, np.zeros(6)], [*NAMES, "fox"])
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "roc_auc_ovr_macro"):
        assert m4[key] == pytest.approx(m[key]), key
    assert m4["confusion_matrix"][3] == [0, 0, 0, 0] and len(m4["confusion_matrix"][0]) == 4


def test_single_sample_and_single_class() -> None:
    m = _metrics([1], [1], np.array([[0.2, 0.8]]), ["a", "b"])
    assert m["n_samples"] == 1 and m["accuracy"] == 1.0
    assert m["roc_auc_ovr_macro"] is None
    assert m["per_class"]["b"]["roc_auc"] is None and m["per_class"]["a"]["support"] == 0
    assert m["log_loss"] == pytest.approx(-math.log(0.8))
    assert m["confusion_matrix"] == [[0, 0], [0, 1]]
    wrong = _metrics([0, 0], [1, 1], np.array([[0.4, 0.6], [0.1, 0.9]]), ["a", "b"])
    assert wrong["accuracy"] == 0.0 and wrong["macro_f1"] == 0.0
    assert wrong["roc_auc_ovr_macro"] is None
    one = _metrics([0, 0], [0, 0], np.ones((2, 1)), ["only"])
    assert one["accuracy"] == 1.0 and one["log_loss"] == 0.0 and one["confusion_matrix"] == [[2]]
    empty = _metrics([], [], None, ["a", "b"])
    assert empty["n_samples"] == 0 and empty["accuracy"] is None
    assert empty["confusion_matrix"] == [[0, 0], [0, 0]]


def test_proba_none_gives_no_auc() -> None:
    m = _metrics([0, 1, 2, 1], [0, 1, 1, 1], None, NAMES)
    assert m["roc_auc_ovr_macro"] is None and m["log_loss"] is None
    assert all(v["roc_auc"] is None for v in m["per_class"].values())


def test_numpy_inputs_give_plain_json() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=40).astype(np.int32)
    proba = rng.dirichlet(np.ones(3), size=40).astype(np.float32)
    m = _metrics(y, proba.argmax(1), proba, np.array(NAMES))
    assert 0 <= m["roc_auc_ovr_macro"] <= 1 and m["log_loss"] > 0
    assert json.loads(json.dumps(m)) == m


def test_inconsistent_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="shape"):
        classification_metrics([0, 1], [0, 1], np.ones((2, 2)) / 2, NAMES)
    with pytest.raises(ValueError, match="outside"):
        classification_metrics([0, 3], [0, 1], None, NAMES)
    with pytest.raises(ValueError, match="equal length"):
        classification_metrics([0, 1], [0], None, NAMES)
    with pytest.raises(ValueError, match="unique"):
        classification_metrics([0, 1], [0, 1], None, ["a", "a"])


def test_write_json_round_trips_and_leaves_no_temp_files(tmp_path: Path) -> None:
    m = _metrics(Y_TRUE, Y_PRED, None, ["café", "dog", "<eel>"])
    target = tmp_path / "out" / "metrics.json"
    assert write_json(target, m) == target
    text = target.read_text(encoding="utf-8")
    assert json.loads(text) == m
    assert '\n  "n_samples": 9' in text  # indent=2
    assert "café" in text  # UTF-8, not \u escapes
    write_json(target, {"replaced": True})
    assert json.loads(target.read_text(encoding="utf-8")) == {"replaced": True}
    assert os.listdir(target.parent) == ["metrics.json"]


def test_write_json_failure_keeps_the_old_file(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "metrics.json"
    write_json(target, {"version": 1})
    with pytest.raises(TypeError):
        write_json(target, {"bad": object()})  # not serialisable: nothing is written

    def crash(src: str, dst: str) -> None:
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(RunError, match=r"metrics.json: cannot write \(simulated crash"):
        write_json(target, {"version": 2})  # the error names the file
    monkeypatch.undo()
    assert json.loads(target.read_text(encoding="utf-8")) == {"version": 1}
    assert os.listdir(tmp_path) == ["metrics.json"]
