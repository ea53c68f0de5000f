"""`transferkit zeroshot` on real images: the bundled Fashion-MNIST sample with its bundled
descriptions and attribute table; unseen classes are recognised far above chance, their
images are never trained on, the calibration is chosen without the test set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from transferkit.cli import app
from transferkit.data.samples import fashion_mnist_classes
from transferkit.errors import DataError
from transferkit.model import TransferModel
from transferkit.zeroshot_run import zeroshot_run

UNSEEN = ["pullover", "dress", "sandal", "shirt", "ankle_boot"]


@pytest.mark.parametrize("method,side", [("ridge", "descriptions"), ("eszsl", "attributes"),
                                         ("dap", "attributes")])
def test_unseen_classes_far_above_chance(sample_dir: Path, lite0, tmp_path: Path,
                                         method: str, side: str) -> None:
    desc, attrs = fashion_mnist_classes()
    kw = {"descriptions": desc} if side == "descriptions" else {"attributes": attrs}
    res = zeroshot_run(sample_dir, tmp_path / method, unseen=UNSEEN, method=method,
                       backbone=lite0, seed=0, **kw)
    m = res.metrics
    # chance among the 5 unseen classes: 0.2; measured 0.40-0.47 on these 75 test images
    assert m["zsl_unseen_accuracy"] > 0.3, m
    assert m["train_images"] == 5 * 45  # unseen-class images set aside, 25% held for test
    assert m["gzsl_calibrated"]["H"] >= m["gzsl"]["H"] - 0.05
    assert (tmp_path / method / "report.html").is_file()
    if method != "dap":  # a linear map: saved, and it predicts unseen classes
        model = TransferModel.load(tmp_path / method)
        assert set(UNSEEN) <= set(model.class_names)


def test_cli_and_bad_side_information(sample_dir: Path, tmp_path: Path) -> None:
    desc, _ = fashion_mnist_classes()
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"bag": "  "}))
    res = CliRunner().invoke(app, ["zeroshot", str(sample_dir), "--out", str(tmp_path / "a"),
                                   "--unseen", "bag", "--classes", str(empty),
                                   "--image-size", "64"])
    assert res.exit_code == 2 and "description of class 'bag' is empty" in res.output
    bad = tmp_path / "attrs.csv"
    bad.write_text("class,stripes\nbag,1\nsandal,x\n")
    res = CliRunner().invoke(app, ["zeroshot", str(sample_dir), "--out", str(tmp_path / "b"),
                                   "--unseen", "sandal", "--attributes", str(bad),
                                   "--method", "dap"])
    assert res.exit_code == 2 and "attrs.csv:3" in res.output and "stripes" in res.output
    res = CliRunner().invoke(app, ["zeroshot", str(sample_dir), "--out", str(tmp_path / "c"),
                                   "--unseen", "sandal", "--method", "dap",
                                   "--classes", str(desc)])
    assert res.exit_code == 2 and "needs --attributes" in res.output
    with pytest.raises(DataError, match="no attribute row"):
        from transferkit.zeroshot_run import class_vectors

        class_vectors(["bag", "unicorn"], attributes=fashion_mnist_classes()[1])
    res = CliRunner().invoke(app, ["zeroshot", str(sample_dir), "--out", str(tmp_path / "d"),
                                   "--unseen", "sandal,shirt", "--classes", str(desc),
                                   "--image-size", "64"])
    assert res.exit_code == 0, res.output
    assert "set aside" in res.output and "calibration" in res.output
    assert np.isfinite(json.loads((tmp_path / "d" / "metrics.json").read_text())
                       ["zsl_unseen_accuracy"])
