"""Models with several named heads, the versioned run format, and version-1 run directories."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from transferkit.data import fashion_mnist_sample
from transferkit.heads import fit_head
from transferkit.model import FORMAT_VERSION, TransferModel

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("run", ["v1_probe_pixels", "v1_finetune_cnn"])
def test_version_1_run_directories_load_and_predict_identically(run: str) -> None:
    d = FIXTURES / run
    assert json.loads((d / "config.json").read_text())["format_version"] == 1
    expected = json.loads((d / "expected.json").read_text())
    items = [fashion_mnist_sample() / p for p in expected["items"]]
    model = TransferModel.load(d)
    np.testing.assert_allclose(model.predict_proba(items, cache=False), expected["proba"],
                               atol=1e-6)
    assert model.predict(items, cache=False) == expected["predicted"]
    assert model.head_names == ["default"]


@pytest.fixture(scope="module")
def two_heads(tiny_backbones, tiny_data):
    """One tiny CNN backbone with a fine-label head (3 classes) and a coarse head (2)."""
    from transferkit.backbones import load_backbone

    train, _ = tiny_data["image"]
    bb = load_backbone(tiny_backbones["image"])
    feats = bb.extract(train, cache=False).features
    fine = fit_head(feats, train.labels, 3, "logreg")
    coarse_labels = (train.labels == 2).astype(np.int64)  # trouser vs the rest
    coarse = fit_head(feats, coarse_labels, 2, "logreg")
    return TransferModel(bb, {"fine": fine, "coarse": coarse},
                         {"fine": train.class_names, "coarse": ["other", "bottom"]})


def test_two_head_model_saves_loads_and_predicts(two_heads, tiny_data, tmp_path) -> None:
    _, val = tiny_data["image"]
    two_heads.save(tmp_path / "run")
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["format_version"] == FORMAT_VERSION == 2
    assert [h["name"] for h in cfg["heads"]] == ["fine", "coarse"]
    loaded = TransferModel.load(tmp_path / "run")
    before, after = two_heads.predict_all(val.items), loaded.predict_all(val.items, cache=False)
    assert set(before) == set(after) == {"fine", "coarse"}
    for k in before:
        np.testing.assert_allclose(after[k], before[k], atol=1e-6)
    assert before["fine"].shape == (len(val), 3) and before["coarse"].shape == (len(val), 2)
    assert loaded.predict(val.items, head="coarse", cache=False)[0] in ("other", "bottom")
    assert loaded.class_names == val.class_names  # the default (first) head's
    with pytest.raises(ValueError, match="no head 'colour'"):
        loaded.predict(val.items, head="colour")


def test_two_head_onnx_export_has_one_output_per_head(two_heads, tiny_data, tmp_path) -> None:
    import onnxruntime as ort
    import torch

    _, val = tiny_data["image"]
    path = two_heads.export_onnx(tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["fine", "coarse"]
    batch = torch.stack([two_heads.backbone.prepare(p) for p in val.items])
    fine, coarse = sess.run(None, {"input": batch.numpy()})
    # what `predict` answers for each head, from the files
    ref = {k: two_heads.predict_proba(val.items, head=k, cache=False) for k in ("fine", "coarse")}
    assert float(np.abs(fine - ref["fine"]).max()) <= 1e-4
    assert float(np.abs(coarse - ref["coarse"]).max()) <= 1e-4
    meta = json.loads(sess.get_modelmeta().custom_metadata_map["class_names"])
    assert meta == {"fine": val.class_names, "coarse": ["other", "bottom"]}


def test_unknown_format_version_is_refused(tmp_path, two_heads) -> None:
    from transferkit.errors import RunError

    two_heads.save(tmp_path / "run")
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    cfg["format_version"] = 99
    (tmp_path / "run" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RunError, match="run format 99 is not supported"):
        TransferModel.load(tmp_path / "run")


def test_cli_predict_on_a_multi_head_run_answers_every_head(two_heads, tiny_data,
                                                            tmp_path) -> None:
    from typer.testing import CliRunner

    from transferkit.cli import app

    _, val = tiny_data["image"]
    two_heads.save(tmp_path / "run")
    files = [str(p) for p in val.items[:3]]
    res = CliRunner().invoke(app, ["predict", str(tmp_path / "run"), *files, "--json"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in res.output.strip().splitlines()]
    assert len(rows) == 3 and all(set(r["heads"]) == {"fine", "coarse"} for r in rows)
    for head in ("fine", "coarse"):
        proba = two_heads.predict_proba(val.items[:3], head=head, cache=False)
        names = two_heads.task_classes[head]
        assert [r["heads"][head][0]["label"] for r in rows] == [
            names[i] for i in proba.argmax(1)]
        assert [r["heads"][head][0]["probability"] for r in rows] == pytest.approx(
            proba.max(1), abs=1e-5)
