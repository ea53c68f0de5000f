"""Try transferkit's command line on bad inputs and faults, as a new user would; print a table.

Each case runs the real CLI in a fresh process on files made here (bundled Fashion-MNIST
images, WordNet-free texts), and records the exit status, the time to the answer and the
first line of the message. Expected: exit 2 with a message naming the file / row / option
(never a traceback), or exit 0 where the input is fine and something is merely skipped.

Run: .venv/bin/python tools/bad_inputs.py [--out results.md]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from transferkit.data import fashion_mnist_sample

CLI = [sys.executable, "-c", "from transferkit.cli import main; main()"]


def bomb(path: Path, side: int = 20000) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + (side + 7) // 8)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side,
                                                                         1, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tk-bad-"))
    sample = fashion_mnist_sample()
    good = root / "good"
    for cls in ("bag", "sneaker", "trouser"):
        shutil.copytree(sample / cls, good / cls)
    run = root / "run"
    subprocess.run([*CLI, "fit", str(good), "--out", str(run), "--backbone", "pixels"],
                   check=True, capture_output=True)
    img = next((good / "bag").glob("*.png"))

    def data_with(name: str, make: Callable[[Path], object]) -> Path:
        d = root / name
        shutil.copytree(good, d)
        make(d)
        return d

    texts = root / "texts.csv"
    texts.write_text("text,label\nthe cat sat,animal\nsoup is hot,food\n" * 5)
    latin = root / "latin.csv"
    latin.write_bytes("text,label\ncaf\xe9 au lait,food\n".encode("latin-1"))
    trunc = root / "trunc"
    shutil.copytree(run, trunc)
    w = trunc / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    badcfg = root / "badcfg"
    shutil.copytree(run, badcfg)
    (badcfg / "config.json").write_text("{not json")
    empty_dir = root / "empty_target"
    empty_dir.mkdir()
    one_class = root / "one_class"
    shutil.copytree(good / "bag", one_class / "bag")
    desc = root / "desc.json"
    desc.write_text('{"bag": "a bag with handles", "sneaker": "", "trouser": "long legs"}')
    attrs = root / "attrs.csv"
    attrs.write_text("class,has_legs,has_sole\nbag,0,0\nsneaker,0,1\n")
    audio = root / "audio"
    for cls in ("yes", "no"):
        (audio / cls).mkdir(parents=True)
        for i in range(3):
            (audio / cls / f"{i}.wav").write_bytes(b"RIFF not really a wave file")
    cases: list[tuple[str, list[str]]] = [
        ("adapt: empty target folder", ["adapt", str(good), str(empty_dir), "--backbone",
                                        "lenet", "--out", str(root / "a1")]),
        ("adapt: image source, text target", ["adapt", str(good), str(texts), "--backbone",
                                              "lenet", "--out", str(root / "a2")]),
        ("fewshot: 5 ways from 3 classes", ["fewshot", str(good), "--ways", "5", "--shots",
                                            "1", "--backbone", "pixels", "--out",
                                            str(root / "f1")]),
        ("zeroshot: an empty description", ["zeroshot", str(good), "--unseen", "sneaker",
                                            "--classes", str(desc), "--backbone", "pixels",
                                            "--out", str(root / "z1")]),
        ("zeroshot: attribute table misses a class", [
            "zeroshot", str(good), "--unseen", "sneaker", "--attributes", str(attrs),
            "--method", "eszsl", "--backbone", "pixels", "--out", str(root / "z2")]),
        ("multitask: the same task name twice", ["multitask", "--task", f"a={good}", "--task",
                                                 f"a={good}", "--out", str(root / "m1")]),
        ("multitask: an image task and a text task", [
            "multitask", "--task", f"img={good}", "--task", f"txt={texts}", "--backbone",
            "pixels", "--out", str(root / "m2")]),
        ("rank: a single class", ["rank", str(one_class), "--backbones", "pixels"]),
        ("audio: WAV files that are not audio", ["fit", str(audio), "--backbone",
                                                 "speech_embedding", "--out",
                                                 str(root / "s1")]),
        ("missing data folder", ["fit", str(root / "nope"), "--out", str(root / "o1")]),
        ("flat folder of images (no classes)", ["fit", str(good / "bag"), "--out",
                                                str(root / "o2")]),
        ("corrupt PNG", ["fit", str(data_with("corrupt", lambda d: (d / "bag" / "x.png")
                                              .write_bytes(b"\x89PNG junk"))),
                         "--out", str(root / "o3"), "--backbone", "pixels"]),
        ("corrupt PNG with --skip-bad", ["fit", str(root / "corrupt"), "--out",
                                         str(root / "o4"), "--backbone", "pixels",
                                         "--skip-bad"]),
        ("decompression bomb PNG", ["fit", str(data_with("bomb", lambda d: bomb(
            d / "bag" / "bomb.png"))), "--out", str(root / "o5"), "--backbone", "pixels"]),
        ("decompression bomb with --skip-bad", ["fit", str(root / "bomb"), "--out",
                                                str(root / "o6"), "--backbone", "pixels",
                                                "--skip-bad"]),
        ("empty class folder", ["fit", str(data_with("empty", lambda d: (d / "gravel")
                                                     .mkdir())), "--out", str(root / "o7"),
                                "--backbone", "pixels"]),
        ("existing run as --out", ["fit", str(good), "--out", str(run), "--backbone",
                                   "pixels"]),
        ("read-only --out (/proc)", ["fit", str(good), "--out", "/proc/tk-run",
                                     "--backbone", "pixels"]),
        ("unknown backbone", ["fit", str(good), "--out", str(root / "o8"), "--backbone",
                              "efficientnet-lite9"]),
        ("unknown strategy", ["fit", str(good), "--out", str(root / "o9"), "--strategy",
                              "finetuning"]),
        ("option the strategy does not take", ["fit", str(good), "--out", str(root / "o10"),
                                               "--l2sp", "0.1"]),
        ("--image-size 0", ["fit", str(good), "--out", str(root / "o11"), "--strategy",
                            "finetune", "--image-size", "0"]),
        ("--freeze 99", ["fit", str(good), "--out", str(root / "o12"), "--strategy",
                         "finetune", "--freeze", "99", "--backbone", "cnn"]),
        ("--test-fraction 2", ["fit", str(good), "--out", str(root / "o13"),
                               "--test-fraction", "2", "--backbone", "pixels"]),
        ("bad -o value", ["fit", str(good), "--out", str(root / "o14"), "-o", "novalue"]),
        ("text CSV not UTF-8", ["fit", str(latin), "--out", str(root / "o15")]),
        ("text data on an image backbone", ["fit", str(texts), "--out", str(root / "o16"),
                                            "--backbone", "pixels"]),
        ("resume of a finished run", ["fit", "--resume", str(run)]),
        ("resume of a folder that is no run", ["fit", "--resume", str(good)]),
        ("predict with truncated weights", ["predict", str(trunc), str(img)]),
        ("predict with unreadable config", ["predict", str(badcfg), str(img)]),
        ("predict on a non-run folder", ["predict", str(good), str(img)]),
        ("predict a missing image", ["predict", str(run), str(root / "nope.png")]),
        ("predict --text on an image run", ["predict", str(run), "--text", "hello"]),
        ("evaluate with an unknown class", ["evaluate", str(run), str(data_with(
            "zebra", lambda d: shutil.copytree(d / "bag", d / "zebra"))), "--out",
            str(root / "e1")]),
        ("evaluate into an existing evaluation", ["evaluate", str(run), str(good), "--out",
                                                  str(run)]),
        ("compare with an unknown rung", ["compare", str(good), "--out", str(root / "c1"),
                                          "--rungs", "frozen,bogus"]),
        ("export to an unwritable path", ["export", str(run), "--onnx", "/proc/tk.onnx"]),
        ("class named like markup", ["fit", str(data_with(
            "markup", lambda d: shutil.move(str(d / "bag"), d / "[/science]"))), "--out",
            str(root / "o17"), "--backbone", "pixels"]),
    ]
    rows = []
    for name, argv in cases:
        t0 = time.perf_counter()
        res = subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=600,
                             env={**os.environ, "COLUMNS": "200"})
        took = time.perf_counter() - t0
        err = res.stderr.strip().splitlines()
        first = next((ln for ln in err if ln.startswith("error:")), err[-1] if err else "")
        verdict = ("traceback!" if "Traceback" in res.stderr else
                   "ok" if res.returncode in (0, 2) else f"exit {res.returncode}")
        rows.append((name, res.returncode, f"{took:.1f}", verdict, first[:150]))
        print(f"{name}: exit {res.returncode} ({took:.1f} s) {first[:150]}", flush=True)
    # a kill in the middle of an --overwrite replacement
    proc = subprocess.Popen([*CLI, "fit", str(sample), "--out", str(run), "--overwrite",
                             "--strategy", "finetune", "--backbone", "cnn", "--image-size",
                             "32", "--epochs", "5"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    before = (run / "metrics.json").read_bytes()
    ck = root / "run.partial" / "checkpoints"
    while not ck.exists() and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    intact = (run / "metrics.json").read_bytes() == before
    rows.append(("SIGKILL during an --overwrite run", -9, "-",
                 "ok" if intact else "LOST", "old run intact" if intact else "old run lost"))
    table = ["| case | exit | seconds | verdict | message |", "|---|---|---|---|---|"]
    table += [f"| {n} | {c} | {t} | {v} | {m.replace('|', '/')} |" for n, c, t, v, m in rows]
    text = "\n".join(table) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
