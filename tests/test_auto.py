"""`transferkit auto`: its choice is explained, recorded and made on validation data only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from transferkit.cli import app
from transferkit.runs.auto import auto_run, plans_for


def test_plans_follow_data_size_and_budget() -> None:
    few = [p["strategy"] for p in plans_for("image", 5, 50, 600)]
    many = [p["strategy"] for p in plans_for("image", 100, 1000, 3600)]
    assert few == ["probe"] and many[:2] == ["finetune", "probe"]
    tight = plans_for("image", 100, 1000, 30)
    assert tight[0]["strategy"] == "probe" and "exceeds the budget" in tight[-1]["why"]
    assert plans_for("text", 8, 80, 600)[0]["strategy"] == "contrastive"


def test_auto_never_reads_test_labels(tiny_data) -> None:
    """Texts: contrastive (few labels) and the probe both run; shuffled test labels change
    neither the choice nor the validation scores it was made on."""
    import tempfile

    from transferkit.data import from_texts

    train, test = tiny_data["text"]
    texts = list(train.items) * 2  # 12 per class: contrastive, then the probe
    labels = [train.class_names[y] for y in train.labels] * 2
    data = from_texts(texts, labels, source="tiny texts x2")
    shuffled = test.subset(np.arange(len(test)))
    shuffled.labels = np.random.default_rng(0).permutation(test.labels)
    kw = {"budget_minutes": 5, "candidates": ["minilm"], "seed": 0}
    a = auto_run(data, tempfile.mkdtemp() + "/a", test=test, **kw).record
    b = auto_run(data, tempfile.mkdtemp() + "/b", test=shuffled, **kw).record
    assert set(a["results"]) == {"contrastive", "probe"}
    assert a["kept"] == b["kept"] and a["backbone"] == b["backbone"]
    assert {k: v["val_accuracy"] for k, v in a["results"].items()} == \
        {k: v["val_accuracy"] for k, v in b["results"].items()}
    assert "LogME" in a["explanation"]


def test_cli_auto_writes_the_decision_record(small_image_dir: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["auto", str(small_image_dir), "--out", str(tmp_path / "o"),
                                   "--budget", "0.2", "--backbones", "efficientnet_lite0"])
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "o" / "auto.json").read_text())
    assert record["kept"] in record["results"] and record["per_class_median"] == 7
    assert (tmp_path / "o" / "runs" / record["kept"] / "report.html").is_file()
