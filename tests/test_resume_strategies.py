"""Killed and resumed, contrastive, LoRA and protonet fits give the run an uninterrupted one
gives: the same history, metrics and saved weights. Each killed process SIGKILLs itself after
the first step of epoch 2 (``TRANSFERKIT_TEST_KILL_AT``), a fixed point, never a race."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from transferkit.train.testhook import KILL_AT

COMMON = ["--epochs", "3", "--seed", "1", "--no-cache"]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from transferkit.cli import main; main()", *args]


def _history(run: Path) -> list[dict]:
    hist = json.loads((run / "metrics.json").read_text())["history"]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in hist]


@pytest.fixture(scope="module")
def texts_csv(tmp_path_factory: pytest.TempPathFactory, tiny_data) -> Path:
    """The 24 tiny texts of three classes as a CSV."""
    path = tmp_path_factory.mktemp("texts") / "texts.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for ds in tiny_data["text"]:
            names = [ds.class_names[lab] for lab in ds.labels]
            w.writerows(zip(ds.items, names, strict=True))
    return path


def _case(name: str, texts_csv: Path, tiny_text_dir: Path, small_image_dir: Path
          ) -> tuple[Path, list[str]]:
    if name == "contrastive":
        return texts_csv, ["--strategy", "contrastive", "--backbone", str(tiny_text_dir),
                           "--batch-size", "6"]
    if name == "lora":
        return texts_csv, ["--strategy", "lora", "--backbone", str(tiny_text_dir),
                           "--batch-size", "6", "--lr", "1e-2"]
    return small_image_dir, ["--strategy", "protonet", "--backbone", "lenet", "-o", "ways=3",
                             "-o", "shots=2", "-o", "queries=2", "-o", "episodes=4"]


@pytest.mark.parametrize("name", ["contrastive", "lora", "protonet"])
def test_sigkill_then_resume_gives_the_uninterrupted_run(name: str, texts_csv: Path,
                                                         tiny_text_dir: Path,
                                                         small_image_dir: Path,
                                                         tmp_path: Path) -> None:
    data, args = _case(name, texts_csv, tiny_text_dir, small_image_dir)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    # the uninterrupted run and the one that kills itself, side by side
    runs = [subprocess.Popen(_cli("fit", str(data), "--out", str(out), *args, *COMMON),
                             env=e, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
            for out, e in ((whole, env), (broken, {**env, KILL_AT: "2:1"}))]
    (_, err_whole), (_, err_broken) = (p.communicate(timeout=300) for p in runs)
    assert runs[0].returncode == 0, err_whole
    assert runs[1].returncode == -signal.SIGKILL, err_broken
    ckpts = list((broken / "checkpoints").rglob("checkpoint.pt"))
    assert len(ckpts) == 1, ckpts
    done = torch.load(ckpts[0], weights_only=True)
    assert done["epoch"] == 1 and not done["finished"]  # epoch 2 was under way
    assert not (broken / "metrics.json").exists()

    res = subprocess.run(_cli("fit", "--resume", str(broken)), env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    hist = _history(whole)
    assert len(hist) == 3 and _history(broken) == hist
    assert hist[-1]["train_loss"] != hist[0]["train_loss"]  # it trained
    a = json.loads((whole / "metrics.json").read_text())
    b = json.loads((broken / "metrics.json").read_text())
    for key in ("accuracy", "macro_f1", "log_loss", "confusion_matrix"):
        assert a[key] == b[key], key
    wa, wb = load_file(whole / "model.safetensors"), load_file(broken / "model.safetensors")
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa), name
