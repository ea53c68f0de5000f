"""`transferkit rank`: pretrained features rank above pixels and random weights on real images
without training; the verification probe agrees; stage cuts and JSON output."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from transferkit.backbones import load_backbone
from transferkit.cli import app
from transferkit.data import from_folder
from transferkit.selection.rank import rank_backbones


def test_pretrained_ranks_above_pixels_and_random_weights(sample_dir: Path) -> None:
    ds = from_folder(sample_dir)
    random_bb = load_backbone("cnn").with_image_size(32)  # random weights, never trained
    rows = rank_backbones(ds, ["efficientnet_lite0", "pixels", random_bb], verify=True,
                          scores=["logme", "hscore", "transrate"])
    by = {r["candidate"]: r for r in rows}
    best = by["efficientnet_lite0"]
    for other in ("pixels", "cnn"):
        assert best["logme"] > by[other]["logme"], (best, by[other])
        assert best["probe_accuracy"] > by[other]["probe_accuracy"]
    assert rows[0]["candidate"] == "efficientnet_lite0"


def test_cli_rank_stages_json_and_bad_names(small_image_dir: Path) -> None:
    res = CliRunner().invoke(app, ["rank", str(small_image_dir), "--backbones",
                                   "efficientnet_lite0", "--stages", "4", "--scores", "logme",
                                   "--source", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output[res.output.index("["):])
    names = [r["candidate"] for r in rows]
    assert names == ["efficientnet_lite0", "efficientnet_lite0 (first 4 stages)"] or \
        set(names) == {"efficientnet_lite0", "efficientnet_lite0 (first 4 stages)"}
    full = next(r for r in rows if r["candidate"] == "efficientnet_lite0")
    assert full["leep"] is not None and full["nce"] is not None
    res = CliRunner().invoke(app, ["rank", str(small_image_dir), "--backbones",
                                   "efficientnet_lit"])
    assert res.exit_code == 2 and "efficientnet_lite0" in res.output
