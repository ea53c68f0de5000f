"""Runs end to end: fit -> run directory -> load -> predict / evaluate / export, and the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from transferkit.cli import app
from transferkit.data import from_folder
from transferkit.errors import DataError, RunError
from transferkit.model import TransferModel
from transferkit.runs import evaluate_run, fit_run

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(small_image_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    fit_run(small_image_dir, out, backbone="efficientnet_lite0", seed=0, test_fraction=0.25)
    return out


def test_run_directory_contents(run_dir: Path) -> None:
    assert {"config.json", "model.safetensors", "metrics.json", "report.html"} <= {
        p.name for p in run_dir.iterdir()}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "per_class", "confusion_matrix",
                "roc_auc_ovr_macro"):
        assert key in metrics
    assert metrics["accuracy"] >= 0.8  # bag / sneaker / trouser are easy
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["class_names"] == ["bag", "sneaker", "trouser"]
    assert cfg["backbone"]["arch"] == "tf_efficientnet_lite0"
    assert not list(run_dir.glob("*.tmp")) and not list(run_dir.glob(".*tmp"))


def test_save_load_predict_round_trip(run_dir: Path, small_image_dir: Path, tmp_path) -> None:
    files = sorted(small_image_dir.glob("*/*.png"))[:6]
    model = TransferModel.load(run_dir)
    p1 = model.predict_proba(files, cache=False)
    model.save(tmp_path / "copy")
    p2 = TransferModel.load(tmp_path / "copy").predict_proba(files, cache=False)
    np.testing.assert_array_equal(p1, p2)
    assert p1.shape == (6, 3)
    np.testing.assert_allclose(p1.sum(axis=1), 1.0, atol=1e-5)


def test_loading_rejects_incomplete_runs(tmp_path: Path, run_dir: Path) -> None:
    with pytest.raises(RunError, match="no such run directory"):
        TransferModel.load(tmp_path / "nothing")
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(RunError, match="model.safetensors missing"):
        TransferModel.load(broken)


def test_onnx_export_matches_pytorch(run_dir: Path, small_image_dir: Path, tmp_path) -> None:
    import onnxruntime as ort
    import torch

    model = TransferModel.load(run_dir)
    path = model.export_onnx(tmp_path / "m.onnx")
    files = sorted(small_image_dir.glob("*/*.png"))[:5]
    batch = torch.stack([model.backbone.prepare(f) for f in files])
    ref = model.predict_proba(files, cache=False)  # what `transferkit predict` answers
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": batch.numpy()})[0]
    assert got.shape == ref.shape == (5, 3)
    assert float(np.abs(got - ref).max()) <= 1e-4
    meta = sess.get_modelmeta().custom_metadata_map
    assert json.loads(meta["class_names"]) == ["bag", "sneaker", "trouser"]


def test_skip_bad_counts_corrupt_files(small_image_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(small_image_dir, data)
    (data / "bag" / "zz_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match="zz_corrupt.png"):
        fit_run(data, tmp_path / "fail", backbone="pixels", seed=0)
    assert not (tmp_path / "fail" / "model.safetensors").exists()
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        res = fit_run(data, tmp_path / "ok", backbone="pixels", seed=0, skip_bad=True)
    m = json.loads((tmp_path / "ok" / "metrics.json").read_text())
    skipped = m["train_skipped_files"] + m["skipped_files"]
    assert len(skipped) == 1 and "zz_corrupt.png" in skipped[0]
    report = res.evaluation.report_path.read_text()
    assert "1 unreadable file(s) skipped" in report


def test_evaluate_rejects_unknown_labels(run_dir: Path, tmp_path: Path) -> None:
    img = Image.fromarray(np.zeros((28, 28), np.uint8))
    (tmp_path / "zebra").mkdir()
    img.save(tmp_path / "zebra" / "z.png")
    with pytest.raises(DataError, match="label 'zebra' is not one of the model's classes"):
        evaluate_run(run_dir, tmp_path)


# ---------------------------------------------------------------------------------- CLI

@pytest.mark.parametrize("cmd", ["models", "fit", "evaluate", "predict", "export", "demo"])
def test_every_command_has_help_with_an_example(cmd: str) -> None:
    res = runner.invoke(app, [cmd, "--help"])
    assert res.exit_code == 0
    assert "Example" in res.output and "transferkit" in res.output


def test_cli_models_lists_offline_backbones() -> None:
    res = runner.invoke(app, ["models", "--json"])
    assert res.exit_code == 0
    rows = {r["name"]: r for r in json.loads(res.output)}
    assert rows["efficientnet_lite0"]["offline"] is True


def test_cli_fit_evaluate_predict_export(small_image_dir: Path, sample_dir: Path,
                                        tmp_path: Path) -> None:
    unseen = tmp_path / "unseen"  # the same classes, images the run never trained on
    for cls in ("bag", "sneaker", "trouser"):
        (unseen / cls).mkdir(parents=True)
        for f in sorted((sample_dir / cls).glob("*.png"))[12:24]:
            shutil.copy(f, unseen / cls / f.name)
    run = tmp_path / "run"
    res = runner.invoke(app, ["fit", str(small_image_dir), "--backbone", "efficientnet_lite0",
                              "--strategy", "probe", "--out", str(run), "--head", "knn"])
    assert res.exit_code == 0, res.output
    assert "accuracy" in res.output and (run / "report.html").exists()
    res = runner.invoke(app, ["evaluate", str(run), str(unseen), "--out",
                              str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    ev = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert ev["accuracy"] >= 0.85, ev["accuracy"]  # 36 held-out images, chance 1/3
    # the report's numbers are the model's own answers on those files
    model = TransferModel.load(run)
    data = from_folder(unseen)
    mine = float((model.predict_proba(data.items, cache=False).argmax(1) == data.labels).mean())
    assert ev["accuracy"] == pytest.approx(mine, abs=1e-9)
    files = sorted(unseen.glob("trouser/*.png"))[:2]
    res = runner.invoke(app, ["predict", str(run), *map(str, files), "--top-k", "2", "--json"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.output.strip().splitlines()]
    assert [r["top"][0]["label"] for r in lines] == ["trouser", "trouser"]
    assert len(lines[0]["top"]) == 2
    res = runner.invoke(app, ["export", str(run), "--onnx", str(tmp_path / "m.onnx")])
    assert res.exit_code == 0 and (tmp_path / "m.onnx").stat().st_size > 1_000_000


def test_cli_errors_are_clear_and_exit_2(tmp_path: Path, small_image_dir: Path) -> None:
    res = runner.invoke(app, ["fit", str(tmp_path / "missing"), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "no such file or directory" in res.output
    res = runner.invoke(app, ["fit", str(small_image_dir), "--backbone", "efficientnet-lite0",
                              "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "Did you mean 'efficientnet_lite0'" in res.output
    res = runner.invoke(app, ["predict", str(tmp_path), "x.png"])
    assert res.exit_code == 2 and "not a transferkit run directory" in res.output
