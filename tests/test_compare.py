"""`transferkit compare`: the case-study ladder on one split, with one report."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from transferkit.cli import app
from transferkit.runs.compare import RUNG_NAMES, compare_run, parse_rungs


def test_ladder_subset_writes_table_curves_and_report(sample_dir: Path, tmp_path: Path) -> None:
    """Frozen pretrained features beat raw pixels (logistic regression, C chosen on the same
    validation data) on the ladder's own test set; the scratch CNN trained."""
    import numpy as np

    from transferkit.data import from_folder, make_splits
    from transferkit.strategies import ProbeClassifier

    out = tmp_path / "ladder"
    res = compare_run(sample_dir, out, rungs="scratch,frozen", epochs=10, scratch_epochs=6,
                      image_size=64, scratch_image_size=32, test_fraction=0.5,
                      val_fraction=0.2, seed=0)
    summary = json.loads((out / "comparison.json").read_text())
    assert [r["rung"] for r in summary["rungs"]] == ["scratch", "frozen"]
    by = {r["rung"]: r for r in summary["rungs"]}
    # the no-transfer baseline on the ladder's split (the same seeded split of the same data)
    splits = make_splits(from_folder(sample_dir), test_fraction=0.5, val_fraction=0.2, seed=0)
    frozen = next(r for r in res.results if r.rung.name == "frozen")
    assert list(frozen.evaluation.items) == list(splits.test.items)
    pixels = ProbeClassifier(backbone="pixels", seed=0).fit(splits.train, X_val=splits.val)
    truth = np.asarray(splits.test.class_names)[splits.test.labels]
    px_acc = float(np.mean(pixels.predict(splits.test) == truth))
    # measured: frozen 0.760, pixels 0.713, scratch 0.667 (chance 0.1)
    assert by["frozen"]["accuracy"] >= px_acc + 0.03, (by["frozen"]["accuracy"], px_acc)
    assert by["scratch"]["accuracy"] > 0.5, by["scratch"]["accuracy"]
    assert by["scratch"]["trainable_params"] > by["frozen"]["trainable_params"]
    # every rung trains its full epochs (no early stopping) and keeps its best one
    assert [len(r.history) for r in res.results] == [6, 10], [len(r.history) for r in res.results]
    assert summary["train"] + summary["val"] + summary["test"] == 600
    assert res.best is not None and summary["best"] == res.best.rung.name
    html = (out / "report.html").read_text()
    assert "Comparison: validation (selection) and held-out test (report only)" in html
    assert "Validation accuracy of every rung" in html
    assert "ROC of the worst and the best rung (by validation accuracy)" in html
    assert html.count("data:image/png;base64") >= 6
    for rung in ("scratch", "frozen"):
        assert (out / rung / "report.html").is_file()
        assert (out / rung / "model.safetensors").is_file()


def test_best_rung_is_chosen_without_test_labels(sample_dir: Path, tmp_path: Path) -> None:
    """Shuffled test labels change the test scores, never the choice of the best rung."""
    import numpy as np

    from transferkit.data import from_folder, make_splits

    splits = make_splits(from_folder(sample_dir), test_fraction=0.5, val_fraction=0.2, seed=0)
    shuffled = replace(splits, test=replace(splits.test, labels=np.random.default_rng(0)
                                            .permutation(splits.test.labels)))
    kw = {"rungs": "scratch,frozen", "epochs": 3, "scratch_epochs": 2, "image_size": 48,
          "scratch_image_size": 32, "seed": 0}
    a = compare_run(splits, tmp_path / "a", **kw)
    b = compare_run(shuffled, tmp_path / "b", **kw)
    assert a.best is not None and b.best is not None
    assert a.best.rung.name == b.best.rung.name
    assert a.best.val_score == max(r.val_score for r in a.results)
    assert [r.val_score for r in a.results] == [r.val_score for r in b.results]
    assert [r.metrics["accuracy"] for r in a.results] != [r.metrics["accuracy"]
                                                          for r in b.results]


def test_rung_names() -> None:
    assert len(RUNG_NAMES) == 9 and len(parse_rungs(None)) == 7
    assert [r.name for r in parse_rungs("seed")] == [
        "scratch", "scratch+deeper+dropout", "scratch+deeper+dropout+augment", "frozen",
        "frozen+augment", "finetune-top+augment"]
    assert [r.name for r in parse_rungs(" frozen, scratch ")] == ["scratch", "frozen"]
    with pytest.raises(ValueError, match="unknown rung.*'nope'.*scratch"):
        parse_rungs("scratch,nope")


def test_cli_compare(small_image_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    res = CliRunner().invoke(app, ["compare", str(small_image_dir), "--out", str(out),
                                   "--rungs", "frozen", "--epochs", "2", "--image-size", "64",
                                   "--test-fraction", "0.34"])
    assert res.exit_code == 0, res.output
    assert "frozen (best)" in res.output and (out / "report.html").is_file()
    bad = CliRunner().invoke(app, ["compare", str(small_image_dir), "--out", str(out),
                                   "--rungs", "frozen,bogus"])
    assert bad.exit_code == 2 and "bogus" in bad.output


def test_deeper_scratch_rung_trains_its_own_network(sample_dir: Path, tmp_path: Path) -> None:
    """Seed 004's regularised CNN: one more conv block and a dense layer, saved and reloaded
    with that shape."""
    from transferkit.model import TransferModel

    res = compare_run(sample_dir, tmp_path / "d", rungs="scratch,scratch+deeper+dropout",
                      scratch_epochs=2, scratch_image_size=32, test_fraction=0.5, seed=0)
    by = {r.rung.name: r for r in res.results}
    assert by["scratch+deeper+dropout"].error is None
    assert by["scratch+deeper+dropout"].trainable_params > by["scratch"].trainable_params
    model = TransferModel.load(tmp_path / "d" / "scratch+deeper+dropout")
    assert model.backbone.widths == [32, 64, 128, 256, 256] and model.backbone.fc == 256
    assert len(by["scratch+deeper+dropout"].history) == 2  # one row per epoch it trained
