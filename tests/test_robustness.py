"""Nothing lost, every failure a clear message: run directories, error paths, bounded memory,
honest progress and safe loading. Each test makes its bad input for real."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import stat
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from transferkit.cli import app
from transferkit.errors import DataError, ImageReadError, RunError
from transferkit.model import TransferModel
from transferkit.runs import fit_run
from transferkit.train.testhook import KILL_AT

runner = CliRunner()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from transferkit.cli import main; main()", *args]


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


# --------------------------------------------------------------------- nothing lost

def test_an_existing_run_is_refused_and_replaced_only_when_asked(small_image_dir: Path,
                                                                 tmp_path: Path) -> None:
    run = tmp_path / "run"
    fit_run(small_image_dir, run, backbone="pixels", seed=0)
    before = (run / "model.safetensors").read_bytes()
    with pytest.raises(RunError, match=r"run: already holds a run \(config.json.*--overwrite"):
        fit_run(small_image_dir, run, backbone="pixels", seed=1)
    two = tmp_path / "two"
    for cls in ("bag", "trouser"):
        shutil.copytree(small_image_dir / cls, two / cls)
    # a replacement that fails leaves the old run exactly as it was
    with pytest.raises(DataError):
        fit_run(two, run, backbone="pixels", seed=0, overwrite=True, test=tmp_path / "nope")
    assert (run / "model.safetensors").read_bytes() == before
    assert _metrics(run)["per_class"].keys() == {"bag", "sneaker", "trouser"}
    assert not (tmp_path / "run.partial").exists()  # it failed before anything useful
    # a replacement that finishes is swapped in, and nothing is left beside it
    res = fit_run(two, run, backbone="pixels", seed=0, overwrite=True)
    assert res.run_dir == run and res.evaluation.report_path == run / "report.html"
    assert _metrics(run)["per_class"].keys() == {"bag", "trouser"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "two"]


def test_a_killed_replacement_leaves_the_old_run_and_can_be_resumed(sample_dir: Path,
                                                                    tmp_path: Path) -> None:
    args = ["--strategy", "finetune", "--backbone", "cnn", "--image-size", "32", "--epochs",
            "3", "--lr", "3e-3", "--seed", "0"]
    run = tmp_path / "run"
    first = subprocess.run(_cli("fit", str(sample_dir), "--out", str(run), "--backbone",
                                "pixels"), capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    old = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    # the replacement kills itself after the first step of epoch 2 (a deterministic point)
    proc = subprocess.run(_cli("fit", str(sample_dir), "--out", str(run), "--overwrite", *args),
                          env={**os.environ, KILL_AT: "2:1"}, capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    ckpt = tmp_path / "run.partial" / "checkpoints" / "train" / "checkpoint.pt"
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == old
    again = runner.invoke(app, ["fit", "--resume", str(run)])
    assert again.exit_code == 2 and "unfinished replacement is in" in again.output
    done = subprocess.run(_cli("fit", "--resume", str(tmp_path / "run.partial")),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads((run / "config.json").read_text())["backbone"]["type"] == "cnn"
    assert not (tmp_path / "run.partial").exists()


def test_a_failed_fit_says_so_and_there_is_nothing_to_resume(small_image_dir: Path,
                                                             tmp_path: Path) -> None:
    bad = tmp_path / "data"
    shutil.copytree(small_image_dir, bad)
    (bad / "bag" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    res = runner.invoke(app, ["fit", str(bad), "--out", str(tmp_path / "run"), "--backbone",
                              "pixels"])
    assert res.exit_code == 2 and "broken.png" in res.output
    assert not (tmp_path / "run").exists()  # it failed before anything useful: no trace
    res = runner.invoke(app, ["fit", "--resume", str(tmp_path / "run")])
    assert res.exit_code == 2 and "nothing to resume" in res.output
    # the same --out may be used again: a failed run holds nothing worth keeping
    res = runner.invoke(app, ["fit", str(small_image_dir), "--out", str(tmp_path / "run"),
                              "--backbone", "pixels"])
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "run" / "failed.json").exists()


def test_run_files_follow_the_umask(small_image_dir: Path, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        fit_run(small_image_dir, tmp_path / "run", backbone="pixels", seed=0)
    finally:
        os.umask(old)
    for name in ("config.json", "model.safetensors", "metrics.json", "report.html"):
        mode = stat.S_IMODE((tmp_path / "run" / name).stat().st_mode)
        assert mode == 0o644, (name, oct(mode))


def test_evaluate_and_compare_outputs_are_not_replaced_silently(small_image_dir: Path,
                                                               tmp_path: Path) -> None:
    run = tmp_path / "run"
    fit_run(small_image_dir, run, backbone="pixels", seed=0)
    ev = tmp_path / "ev"
    assert runner.invoke(app, ["evaluate", str(run), str(small_image_dir), "--out",
                               str(ev)]).exit_code == 0
    res = runner.invoke(app, ["evaluate", str(run), str(small_image_dir), "--out", str(ev)])
    assert res.exit_code == 2 and "already holds a evaluation" not in res.output
    assert "already holds an evaluation" in res.output and "--overwrite" in res.output
    assert runner.invoke(app, ["evaluate", str(run), str(small_image_dir), "--out", str(ev),
                               "--overwrite"]).exit_code == 0
    res = runner.invoke(app, ["compare", str(small_image_dir), "--out", str(run),
                              "--rungs", "frozen"])
    assert res.exit_code == 2 and "already holds a run" in res.output


# ------------------------------------------------------- every failure a clear message

def _bomb_png(path: Path, side: int = 20000) -> Path:
    """A real PNG of side x side black pixels (1 bit): a few dozen KB that decode to 50 MB
    of rows and 400 megapixels -- a decompression bomb by Pillow's rule."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side,
                                                                         1, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def test_a_decompression_bomb_names_the_file_and_is_skipped(small_image_dir: Path,
                                                            tmp_path: Path) -> None:
    from transferkit.data import load_image

    data = tmp_path / "data"
    shutil.copytree(small_image_dir, data)
    bomb = _bomb_png(data / "bag" / "bomb.png")
    assert bomb.stat().st_size < 500_000
    with pytest.raises(ImageReadError, match=r"bomb.png: too large.*89.5 megapixels"):
        load_image(bomb)
    res = runner.invoke(app, ["fit", str(data), "--out", str(tmp_path / "a"), "--backbone",
                              "pixels"])
    assert res.exit_code == 2 and "bomb.png" in res.output and "too large" in res.output
    res = runner.invoke(app, ["fit", str(data), "--out", str(tmp_path / "b"), "--backbone",
                              "pixels", "--skip-bad"])
    assert res.exit_code == 0, res.output
    skipped = _metrics(tmp_path / "b")["train_skipped_files"] + _metrics(
        tmp_path / "b")["skipped_files"]
    assert any("bomb.png" in s for s in skipped)


def test_a_large_image_is_decoded_in_bounded_memory(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    img = Image.new("L", (9000, 9000), 0)
    img.paste(255, (0, 0, 4500, 9000))
    img.save(big, compress_level=1)
    del img
    # VmHWM: this process's peak resident memory (ru_maxrss would include the parent's)
    probe = ("from transferkit.data.images import load_image; "
             f"im = load_image('{big}', max_side=256); "
             "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0]; "
             "print(im.size, hwm.split()[1])")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split(")")
    w, h = map(int, out[0].strip("( ").split(","))
    peak_mb = int(out[1]) / 1024
    assert 512 <= min(w, h) <= 1024  # reduced right after decoding
    # the decoded 8-bit image is 81 MB; an RGB copy at full size alone would be 243 MB
    assert peak_mb < 230, peak_mb


def test_an_unwritable_out_is_a_clear_error(small_image_dir: Path, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    target = ro / "run"
    try:
        target.mkdir()
        target.rmdir()
        writable = True  # root ignores the mode bits: use a read-only filesystem instead
    except OSError:
        writable = False
    if writable:
        target = next((Path(p) / "transferkit-run" for p in ("/proc", "/sys")
                       if _mkdir_fails(Path(p) / "transferkit-run")), None)
    if target is None:
        pytest.skip("no read-only directory can be made here: running as root with /proc "
                    "and /sys writable")
    res = runner.invoke(app, ["fit", str(small_image_dir), "--out", str(target), "--backbone",
                              "pixels"])
    assert res.exit_code == 2, res.output
    assert str(target) in res.output and "cannot write" in res.output


def _mkdir_fails(p: Path) -> bool:
    try:
        p.mkdir()
    except OSError:
        return True
    p.rmdir()
    return False


def test_a_full_disk_is_a_clear_error(small_image_dir: Path, tmp_path: Path) -> None:
    """Writes beyond 60 KB fail (RLIMIT_FSIZE, as a full disk would): exit 2, no traceback."""
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    res = subprocess.run(_cli("fit", str(small_image_dir), "--out", str(tmp_path / "run"),
                              "--backbone", "pixels", "--no-cache"), preexec_fn=limit,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert "cannot write" in res.stderr and "File too large" in res.stderr


def test_a_truncated_weights_file_names_the_path(small_image_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    fit_run(small_image_dir, run, backbone="pixels", seed=0)
    w = run / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    res = runner.invoke(app, ["predict", str(run), str(next(small_image_dir.glob("*/*.png")))])
    assert res.exit_code == 2, res.output
    assert f"{w}: unreadable weights" in " ".join(res.output.split())


def test_messages_are_data_never_markup(small_image_dir: Path, tmp_path: Path) -> None:
    rows = [f"{p.relative_to(small_image_dir)},[/science]"
            for p in sorted(small_image_dir.glob("bag/*.png"))]
    rows += [f"{p.relative_to(small_image_dir)},[bold]trouser"
             for p in sorted(small_image_dir.glob("trouser/*.png"))]
    manifest = small_image_dir / "markup.csv"
    manifest.write_text("path,label\n" + "\n".join(rows) + "\n")
    try:
        run = tmp_path / "run"
        res = runner.invoke(app, ["fit", str(manifest), "--out", str(run), "--backbone",
                                  "pixels"])
        assert res.exit_code == 0, res.output
        img = next(small_image_dir.glob("bag/*.png"))
        res = runner.invoke(app, ["predict", str(run), str(img)])  # a table with the label
        assert res.exit_code == 0 and "[/science]" in res.output
        res = runner.invoke(app, ["predict", str(run), str(img), "--json"])
        assert json.loads(res.output)["top"][0]["label"] == "[/science]"
        assert "[bold]trouser" in (run / "report.html").read_text()
    finally:
        manifest.unlink()
    data = tmp_path / "data"
    shutil.copytree(small_image_dir, data)
    (data / "trouser" / "[bold red]oops.png").write_bytes(b"not a png")
    res = runner.invoke(app, ["fit", str(data), "--out", str(tmp_path / "r2"), "--backbone",
                              "pixels"])
    assert res.exit_code == 2 and "[bold red]oops.png" in res.output


def test_an_empty_class_folder_is_reported(small_image_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(small_image_dir, data)
    (data / "gravel").mkdir()
    res = runner.invoke(app, ["fit", str(data), "--out", str(tmp_path / "run"), "--backbone",
                              "pixels"])
    assert res.exit_code == 0
    assert "gravel: class folder without images, left out (the model has 3 classes)" in \
        " ".join(res.output.split())
    assert "class folder without images" in (tmp_path / "run" / "report.html").read_text()


def test_text_messages_speak_of_texts(tmp_path: Path) -> None:
    from transferkit.data import from_texts, make_splits

    ds = from_texts(["a cat", "a dog", "another dog"], ["cat", "dog", "dog"])
    with pytest.raises(DataError, match=r"class 'cat' has 1 text\(s\)"):
        make_splits(ds)


_MODULES_AFTER_MAIN = """
import sys
from transferkit.cli import main
try:
    main()
finally:
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "PIL", "numpy")
                   or m.startswith(("transferkit.data", "transferkit.runs")))
    print("imported:", heavy)
"""


def test_option_mistakes_are_reported_before_the_data_is_read(tmp_path: Path) -> None:
    """A mistake in the options is answered before any data-loading module (or torch) is even
    imported: no data is read, and no time spent importing what would read it."""
    for extra, needle in ((["--strategy", "finetune", "--image-size", "0"], "--image-size"),
                          (["--backbone", "efficientnet-lite9"], "unknown backbone"),
                          (["--l2sp", "0.1"], "takes no option 'l2sp'")):
        res = subprocess.run([sys.executable, "-c", _MODULES_AFTER_MAIN, "fit",
                              str(tmp_path / "no-such-data"), "--out", str(tmp_path / "r"),
                              *extra], capture_output=True, text=True, timeout=60)
        assert res.returncode == 2 and needle in res.stderr, res.stderr
        assert "no-such-data" not in res.stderr  # the options came first
        assert "imported: []" in res.stdout, (extra, res.stdout)
    assert not (tmp_path / "r").exists()
    # the probe sees a command that does read data (a folder with one broken image)
    (tmp_path / "data" / "bag").mkdir(parents=True)
    (tmp_path / "data" / "bag" / "x.png").write_bytes(b"not an image")
    res = subprocess.run([sys.executable, "-c", _MODULES_AFTER_MAIN, "fit",
                          str(tmp_path / "data"), "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "data" in res.stderr
    assert "'transferkit.data" in res.stdout, res.stdout


# ------------------------------------------------------------- loading a run is safe

def test_a_config_pointing_outside_the_run_is_refused(tiny_backbones, tiny_data,
                                                      tmp_path: Path) -> None:
    from transferkit.strategies import ProbeClassifier

    train, _ = tiny_data["text"]
    ProbeClassifier(backbone=tiny_backbones["text"], cache=False).fit(train).model_.save(
        tmp_path / "run")
    cfg_path = tmp_path / "run" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    (tmp_path / "elsewhere.json").write_text((tmp_path / "run" / "tokenizer.json").read_text())
    cfg["backbone"]["tokenizer"] = "../elsewhere.json"
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(RunError, match=r"config.json: .*tokenizer '../elsewhere.json' is "
                                       r"outside the run directory"):
        TransferModel.load(tmp_path / "run")


def test_a_config_naming_a_hub_architecture_is_refused(small_image_dir: Path,
                                                       tmp_path: Path) -> None:
    from transferkit.strategies import FineTuneClassifier

    FineTuneClassifier(backbone="cnn", epochs=1, image_size=16, cache=False).fit(
        [*sorted(small_image_dir.glob("bag/*.png"))[:4],
         *sorted(small_image_dir.glob("trouser/*.png"))[:4]], ["bag"] * 4 + ["trouser"] * 4
    ).model_.save(tmp_path / "run")
    cfg_path = tmp_path / "run" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["backbone"] = {**cfg["backbone"], "type": "timm", "arch": "hf-hub:someone/model",
                       "name": "x", "source": "x"}
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(RunError, match="config.json: .*'hf-hub:someone/model' names a hub"):
        TransferModel.load(tmp_path / "run")


# ------------------------------------------------------------------ the feature cache

_WRITER = """
import sys, numpy as np
from transferkit.backbones import FeatureCache
c = FeatureCache(sys.argv[1])
rng = np.random.default_rng(int(sys.argv[2]))
for r in range(40):
    c.put_many("bb", ((f"item{i}", np.full(64, i, np.float32)) for i in range(r * 5, r * 5 + 50)))
    got = c.get_many("bb", [f"item{i}" for i in range(0, 250, 7)])
    assert all(float(v[0]) == int(k[4:]) for k, v in got.items()), "corrupt row"
print("ok")
"""


def test_concurrent_writers_share_the_feature_cache(tmp_path: Path) -> None:
    from transferkit.backbones import FeatureCache

    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), str(s)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for s in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert all(o.strip() == "ok" for o, _ in outs)
    cache = FeatureCache(tmp_path)
    got = cache.get_many("bb", [f"item{i}" for i in range(245)])
    assert len(got) == 245
    assert all(np.array_equal(v, np.full(64, int(k[4:]), np.float32)) for k, v in got.items())
