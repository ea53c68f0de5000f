"""The negative-transfer guard: it fires where pretrained features carry less than raw pixels
(a label that is a linear function of the pixels of noise images), keeps transfer on real
photos of clothes, and the text baseline is a bag of words."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from transferkit.cli import app
from transferkit.data import from_arrays, from_texts
from transferkit.data.dataset import Splits
from transferkit.runs import fit_run
from transferkit.runs.guard import baseline_for, run_guard
from transferkit.strategies import ProbeClassifier


def _noise_task(n: int = 400, seed: int = 0):
    """8x8 noise images; the class says whether the top-left quadrant is brighter than the
    bottom-right one (a linear rule on pixels that ImageNet features do not keep)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 8, 8), dtype=np.uint8)
    y = (x[:, :4, :4].mean((1, 2)) > x[:, 4:, 4:].mean((1, 2))).astype(int)
    return from_arrays(list(x), [["darker", "brighter"][v] for v in y],
                       class_names=["darker", "brighter"], source="noise quadrants")


def test_guard_fires_on_a_constructed_negative_transfer_case(tmp_path: Path) -> None:
    ds = _noise_task()
    idx = np.arange(len(ds))
    splits = Splits(train=ds.subset(idx[:240]), val=ds.subset(idx[240:320]),
                    test=ds.subset(idx[320:]))
    est = ProbeClassifier(seed=0).fit(splits.train, X_val=splits.val)
    g = run_guard(est, "probe", {}, splits, seed=0, cache=True)
    assert g is not None and g.kept == "baseline", g.message()
    assert g.baseline_val > g.transfer_val + 0.1
    assert "NEGATIVE TRANSFER" in g.message() and "points" in g.message()


def test_guard_keeps_transfer_on_clothes_and_reports_both(sample_dir: Path,
                                                          tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["fit", str(sample_dir), "--out", str(tmp_path / "run"),
                                   "--guard"])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "run" / "report.html").read_text()
    assert "Negative-transfer guard" in html and "the transfer model is kept" in html
    result = fit_run(_noise_task(), tmp_path / "noise", guard=True)
    assert result.model.backbone.name == "pixels"  # the baseline was kept, and saved
    assert "NEGATIVE TRANSFER" in (tmp_path / "noise" / "report.html").read_text()


def test_text_baseline_is_a_bag_of_words() -> None:
    assert baseline_for("probe", "text") == ("probe", "bow", {})
    assert baseline_for("finetune", "image") == ("finetune", "cnn", {})
    assert baseline_for("adapt", "image") is None
    texts = ["the cat sat", "a dog barked", "cats purr softly", "dogs chase balls"] * 5
    labels = ["cat", "dog", "cat", "dog"] * 5
    est = ProbeClassifier(backbone="bow", seed=0).fit(from_texts(texts, labels))
    assert (est.predict(["the cat purr"]) == ["cat"]).all()
