"""`transferkit fit --strategy finetune`: the run directory, and --resume after a SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from typer.testing import CliRunner

from transferkit.cli import app
from transferkit.train.testhook import KILL_AT

ARGS = ["--strategy", "finetune", "--backbone", "cnn", "--image-size", "32", "--epochs", "4",
        "--val-fraction", "0.1", "--lr", "3e-3", "--seed", "3"]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from transferkit.cli import main; main()", *args]


def _history(run: Path) -> list[dict]:
    hist = json.loads((run / "metrics.json").read_text())["history"]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in hist]


def test_finetune_run_directory(small_image_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["fit", str(small_image_dir), "--out", str(out),
                                   "--strategy", "finetune", "--backbone", "cnn",
                                   "--image-size", "32", "--epochs", "2", "--augment", "light",
                                   "--dropout", "0.3"])
    assert res.exit_code == 0, res.output
    assert {"config.json", "model.safetensors", "metrics.json", "report.html",
            "run_args.json"} <= {p.name for p in out.iterdir()}
    assert not (out / "checkpoints").exists()  # removed once the model is saved
    assert len(_history(out)) == 2
    html = (out / "report.html").read_text()
    assert "Learning curves" in html and "trainable_params" in html
    again = CliRunner().invoke(app, ["fit", "--resume", str(out)])
    assert again.exit_code == 2 and "already finished" in again.output


def test_bad_finetune_options_fail_cleanly(small_image_dir: Path, tmp_path: Path) -> None:
    for extra, needle in ((["--freeze", "x"], "--freeze"), (["--augment", "heavy"], "--augment"),
                          (["--freeze", "9"], "--freeze 9")):
        res = CliRunner().invoke(app, ["fit", str(small_image_dir), "--out", str(tmp_path / "r"),
                                       "--strategy", "finetune", "--backbone", "cnn", *extra])
        assert res.exit_code == 2, res.output
        assert needle in res.output
    res = CliRunner().invoke(app, ["fit", "--resume", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "nothing to resume" in res.output


def test_sigkill_mid_epoch_then_resume_gives_the_same_run(sample_dir: Path,
                                                          tmp_path: Path) -> None:
    env = dict(os.environ)
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    subprocess.run(_cli("fit", str(sample_dir), "--out", str(whole), *ARGS), env=env,
                   check=True, capture_output=True, timeout=300)

    # the process kills itself after the second step of epoch 2 (a deterministic point)
    proc = subprocess.run(_cli("fit", str(sample_dir), "--out", str(broken), *ARGS),
                          env={**env, KILL_AT: "2:2"}, capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    ckpt = broken / "checkpoints" / "train" / "checkpoint.pt"
    done = torch.load(ckpt, weights_only=True)
    assert done["epoch"] == 1 and not done["finished"]
    assert not (broken / "metrics.json").exists()
    assert not [p for p in ckpt.parent.iterdir() if p.name != "checkpoint.pt"]  # no temp files

    res = subprocess.run(_cli("fit", "--resume", str(broken)), env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert _history(broken) == _history(whole)
    a = json.loads((whole / "metrics.json").read_text())
    b = json.loads((broken / "metrics.json").read_text())
    for key in ("accuracy", "macro_f1", "log_loss", "confusion_matrix"):
        assert a[key] == b[key], key
