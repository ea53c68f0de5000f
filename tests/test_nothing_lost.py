"""Nothing lost, round two: --overwrite replaces only a run, never the data or anything else;
export never writes into a run; --resume finishes where the run now is; one writer per
--out. Each case is made for real; the property test generates layouts of data, runs and
other files and checks that no file outside a run directory is ever lost."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from transferkit.cli import app
from transferkit.errors import RunError
from transferkit.runs.rundir import foreign_entries, is_run, out_lock, run_directory

runner = CliRunner()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from transferkit.cli import main; main()", *args]


def _tree(root: Path) -> dict[str, str]:
    """Every file below ``root`` with a hash of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _fake_run(d: Path, extra: dict[str, str] | None = None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "metrics.json"):
        (d / name).write_text("{}")
    (d / "model.safetensors").write_bytes(b"weights")
    (d / "report.html").write_text("<html></html>")
    for name, text in (extra or {}).items():
        (d / name).write_text(text)
    return d


# ----------------------------------------------------------------- the run-directory rules

def test_only_a_recognisable_run_counts_as_one(tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "run")
    assert is_run(run) and foreign_entries(run) == []
    _fake_run(run / "eval-test")
    (run / "checkpoints" / "train").mkdir(parents=True)
    (run / "checkpoints" / "train" / "checkpoint.pt").write_bytes(b"x")
    assert is_run(run)
    (run / "notes.txt").write_text("mine")
    assert foreign_entries(run) == [run / "notes.txt"] and not is_run(run)
    data = tmp_path / "data"
    (data / "cat").mkdir(parents=True)
    (data / "cat" / "a.png").write_bytes(b"png")
    assert foreign_entries(data) == [data] and not is_run(data)
    assert not is_run(tmp_path / "missing")


@pytest.mark.parametrize("layout", ["data", "parent", "notes", "partial-with-files",
                                    "failed-with-files", "file"])
def test_overwrite_never_replaces_anything_but_a_run(tmp_path: Path, layout: str) -> None:
    data = tmp_path / "p" / "data"
    (data / "cat").mkdir(parents=True)
    (data / "cat" / "a.png").write_bytes(b"png")
    out = {"data": data, "parent": tmp_path / "p", "notes": tmp_path / "r",
           "partial-with-files": tmp_path / "q", "failed-with-files": tmp_path / "f",
           "file": tmp_path / "f.txt"}[layout]
    if layout == "notes":
        _fake_run(out, {"notes.txt": "keep me"})
    elif layout == "partial-with-files":
        _fake_run(out)
        (tmp_path / "q.partial").mkdir()
        (tmp_path / "q.partial" / "thesis.tex").write_text("keep me")
    elif layout == "failed-with-files":
        out.mkdir()
        (out / "failed.json").write_text("{}")
        (out / "thesis.tex").write_text("keep me")
    elif layout == "file":
        out.write_text("keep me")
    before = _tree(tmp_path)
    with pytest.raises(RunError, match="--overwrite replaces only|reads|in the way"), \
            run_directory(out, overwrite=True, inputs=[data]) as where:
        (where / "config.json").write_text("{}")
    assert _tree(tmp_path) == before


def test_a_failure_before_anything_useful_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(ValueError), run_directory(out) as where:
        (where / "run_args.json").write_text("{}")
        raise ValueError("bad data")
    assert not out.exists()
    out.mkdir()  # an empty folder the user made stays, empty
    with pytest.raises(ValueError), run_directory(out) as where:
        (where / "config.json").write_text("{}")
        raise ValueError("bad data")
    assert out.is_dir() and list(out.iterdir()) == []
    with pytest.raises(ValueError), run_directory(out) as where:  # resumable: kept, says why
        (where / "checkpoints").mkdir()
        (where / "checkpoints" / "checkpoint.pt").write_bytes(b"x")
        raise ValueError("disk full")
    assert json.loads((out / "failed.json").read_text())["error"] == "disk full"


# Layouts: a data folder (with a CSV), runs (clean, with a notes file, failed, partial), a
# parent of everything; --out is one of them or a new path; the block may fail.
_PLACES = ["root", "data", "data/cat", "runs", "runs/a", "runs/b", "runs/a.partial",
           "runs/c", "new", "data/new", "runs/a/eval-x", "empty", "file.txt", "runs/f"]


def _layout(root: Path, notes_in_a: bool, notes_in_partial: bool, csv_in_runs: bool) -> Path:
    data = root / "data"
    for cls in ("cat", "dog"):
        (data / cls).mkdir(parents=True)
        (data / cls / f"{cls}.png").write_bytes(cls.encode())
    (data / "labels.csv").write_text("path,label\ncat/cat.png,cat\n")
    _fake_run(root / "runs" / "a", {"notes.txt": "mine"} if notes_in_a else None)
    _fake_run(root / "runs" / "a" / "eval-x")
    _fake_run(root / "runs" / "b")
    (root / "runs" / "a.partial").mkdir()
    (root / "runs" / "a.partial" / ("draft.txt" if notes_in_partial else "run_args.json")
     ).write_text("x")
    (root / "runs" / "f").mkdir()
    (root / "runs" / "f" / "failed.json").write_text("{}")
    if csv_in_runs:
        (root / "runs" / "b" / "labels.csv").write_text("path,label\n")
    (root / "empty").mkdir()
    (root / "file.txt").write_text("a file")
    return data


def _protected(root: Path) -> dict[str, str]:
    """Files not inside any directory that is recognisably a run."""
    runs = [d for d in root.rglob("*") if d.is_dir() and is_run(d)]
    return {k: v for k, v in _tree(root).items()
            if not any((root / k).is_relative_to(r) for r in runs)}


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(place=st.sampled_from(_PLACES), overwrite=st.booleans(), fails=st.booleans(),
       notes_in_a=st.booleans(), notes_in_partial=st.booleans(), csv_in_runs=st.booleans(),
       reads=st.sampled_from(["data", "data/labels.csv", "runs/b", "runs/a"]))
def test_no_layout_loses_a_file_outside_a_run(tmp_path_factory: pytest.TempPathFactory,
                                               place: str, overwrite: bool, fails: bool,
                                               notes_in_a: bool, notes_in_partial: bool,
                                               csv_in_runs: bool, reads: str) -> None:
    root = tmp_path_factory.mktemp("layout")
    _layout(root, notes_in_a, notes_in_partial, csv_in_runs)
    read = root / reads
    before, read_before = _protected(root), _tree(read) if read.is_dir() else None
    out = root if place == "root" else root / place
    try:
        with run_directory(out, overwrite=overwrite, inputs=[read]) as where:
            _fake_run(where)
            if fails:
                raise ValueError("the run failed")
    except (RunError, ValueError):
        pass
    after = _tree(root)
    lost = {k for k, v in before.items() if after.get(k) != v}
    assert not lost, (place, overwrite, lost)
    if read_before is not None:
        assert _tree(read) == read_before  # the data (or run) being read is untouched
    assert not list(root.rglob(".*.lock"))  # no lock left behind


# ----------------------------------------------------------------- the commands themselves

def test_fit_and_evaluate_never_write_over_their_data(small_image_dir: Path,
                                                      tmp_path: Path) -> None:
    parent = tmp_path / "parent"
    data = parent / "data"
    shutil.copytree(small_image_dir, data)
    before = _tree(parent)
    for out in (data, parent):
        res = runner.invoke(app, ["fit", str(data), "--out", str(out), "--overwrite",
                                  "--backbone", "pixels"])
        assert res.exit_code == 2 and "reads" in res.output, res.output
    run = tmp_path / "run"
    assert runner.invoke(app, ["fit", str(data), "--out", str(run), "--backbone",
                               "pixels"]).exit_code == 0
    run_files = _tree(run)
    for out in (data, run):
        res = runner.invoke(app, ["evaluate", str(run), str(data), "--out", str(out),
                                  "--overwrite"])
        assert res.exit_code == 2 and "reads" in res.output, res.output
    other = tmp_path / "mine"
    _fake_run(other, {"notes.txt": "keep"})
    res = runner.invoke(app, ["fit", str(data), "--out", str(other), "--overwrite",
                              "--backbone", "pixels"])
    assert res.exit_code == 2 and "notes.txt" in res.output
    assert _tree(parent) == before and _tree(run) == run_files
    assert (other / "notes.txt").read_text() == "keep"


def test_export_never_replaces_a_run_file_or_an_existing_file(small_image_dir: Path,
                                                             tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert runner.invoke(app, ["fit", str(small_image_dir), "--out", str(run), "--backbone",
                               "pixels"]).exit_code == 0
    weights = (run / "model.safetensors").read_bytes()
    res = runner.invoke(app, ["export", str(run), "--onnx", str(run / "model.safetensors"),
                              "--overwrite"])
    assert res.exit_code == 2 and "inside the run directory" in res.output
    res = runner.invoke(app, ["export", str(run), "--onnx", str(run / "eval" / "m.onnx")])
    assert res.exit_code == 2 and "inside the run directory" in res.output
    assert (run / "model.safetensors").read_bytes() == weights
    important = tmp_path / "important.txt"
    important.write_text("keep")
    res = runner.invoke(app, ["export", str(run), "--onnx", str(important)])
    assert res.exit_code == 2 and "already exists; pass --overwrite" in res.output
    assert important.read_text() == "keep"
    assert runner.invoke(app, ["export", str(run), "--onnx", str(important),
                               "--overwrite"]).exit_code == 0
    assert important.read_bytes()[:2] != b"ke"  # replaced by the ONNX file, as asked


def test_a_second_writer_is_told_the_directory_is_in_use(small_image_dir: Path,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "run"
    with out_lock(out):
        res = runner.invoke(app, ["fit", str(small_image_dir), "--out", str(out),
                                  "--overwrite", "--backbone", "pixels"])
    assert res.exit_code == 2 and "in use by another transferkit command" in res.output
    assert not out.exists() and not list(tmp_path.iterdir())
    assert runner.invoke(app, ["fit", str(small_image_dir), "--out", str(out),
                               "--backbone", "pixels"]).exit_code == 0


def _killed_run(data: Path, out: Path) -> None:
    proc = subprocess.Popen(_cli("fit", str(data), "--out", str(out), "--strategy",
                                 "finetune", "--backbone", "cnn", "--image-size", "16",
                                 "--epochs", "4", "--seed", "0"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = out / "checkpoints" / "train" / "checkpoint.pt"
    deadline = time.time() + 240
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.fail("the run finished before it could be killed")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def test_resume_finishes_where_the_run_now_is(small_image_dir: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _killed_run(small_image_dir, runs / "a")
    shutil.move(str(runs / "a"), str(runs / "b"))
    unrelated = _fake_run(runs / "a", {"notes.txt": "another run, with notes"})
    before = _tree(unrelated)
    res = runner.invoke(app, ["fit", "--resume", str(runs / "b"), "--epochs", "20",
                              "--lr", "0.1"])
    assert res.exit_code == 2 and "--epochs 20 (the run: 4)" in res.output
    assert "--lr 0.1 (the run: not set)" in res.output
    res = runner.invoke(app, ["fit", "--resume", str(runs / "b")])
    assert res.exit_code == 0, res.output
    assert (runs / "b" / "metrics.json").is_file() and not (runs / "b" / "checkpoints").exists()
    assert _tree(unrelated) == before
    res = runner.invoke(app, ["fit", "--resume", str(runs / "gone")])
    assert res.exit_code == 2 and "gone: no such run directory" in res.output
