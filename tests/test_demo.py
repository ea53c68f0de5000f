"""`transferkit demo` runs end to end (the bundled sample, offline) and shows what it says:
on one seeded split, pretrained features beat raw pixels with the same head."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from transferkit.cli import app


def test_demo_runs_and_transfer_beats_pixels(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--out", str(out)])
    assert res.exit_code == 0, res.output
    probe = json.loads((out / "metrics.json").read_text())
    pixels = json.loads((out / "baseline-pixels" / "metrics.json").read_text())
    assert probe["accuracy"] > pixels["accuracy"] + 0.05, (probe["accuracy"],
                                                           pixels["accuracy"])
    assert pixels["accuracy"] > 0.5  # the baseline is a real one (chance 0.1)
    html = (out / "report.html").read_text()
    assert "Same split, same head: does the pretrained backbone help?" in html
    assert "pixels + logreg (no transfer)" in html
    again = CliRunner().invoke(app, ["demo", "--out", str(out)])
    assert again.exit_code == 2 and "already holds" in " ".join(again.output.split())
