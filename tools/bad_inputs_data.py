"""The files tools/bad_inputs.py feeds the CLI, made at run time from the bundled sample."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

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


def _wav_folder(root: Path) -> Path:
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(16_000) / 16_000
    for cls, f in (("low", 300), ("high", 1200)):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            wave = 0.3 * np.sin(2 * np.pi * (f + 20 * i) * t) + 0.01 * rng.standard_normal(t.size)
            sf.write(root / cls / f"{i}.wav", wave.astype(np.float32), 16_000)
    return root


def make(root: Path) -> SimpleNamespace:
    """Every input the cases use, under ``root`` (names in the returned namespace)."""
    p = SimpleNamespace(root=root)
    sample = fashion_mnist_sample()
    p.sample = sample
    p.good = root / "good"
    for cls in ("bag", "sneaker", "trouser"):
        shutil.copytree(sample / cls, p.good / cls)
    p.run = root / "run"
    subprocess.run([*CLI, "fit", str(p.good), "--out", str(p.run), "--backbone", "pixels"],
                   check=True, capture_output=True)
    p.lite = root / "lite"
    subprocess.run([*CLI, "fit", str(p.good), "--out", str(p.lite)], check=True,
                   capture_output=True)
    p.img = next((p.good / "bag").glob("*.png"))

    def data_with(name: str, make_it: Callable[[Path], object]) -> Path:
        d = root / name
        shutil.copytree(p.good, d)
        make_it(d)
        return d

    p.data_with = data_with
    _texts(p)
    _runs(p)
    _misc(p, data_with)
    return p


def _texts(p: SimpleNamespace) -> None:
    root = p.root
    p.texts = root / "texts.csv"
    p.texts.write_text("text,label\nthe cat sat,animal\nsoup is hot,food\n" * 5)
    p.latin = root / "latin.csv"
    p.latin.write_bytes("text,label\ncaf\xe9 au lait,food\n".encode("latin-1"))
    p.empty_class_csv = root / "empty_class.csv"
    p.empty_class_csv.write_text("text,label\n" + "the cat sat,animal\nsoup is hot,food\n" * 4
                                 + ",ghost\n  ,ghost\n")
    p.dup_train = root / "dup_train.csv"
    p.dup_test = root / "dup_test.csv"
    lines = [f"review number {i} is {'good' if i % 2 else 'bad'},{'pos' if i % 2 else 'neg'}"
             for i in range(16)]
    p.dup_train.write_text("text,label\n" + "\n".join(lines) + "\n")
    p.dup_test.write_text("text,label\n" + "\n".join(lines[:4]) + "\n")
    p.text_folder = root / "text_folder"
    for cls, words in (("a", "alpha"), ("b", "beta"), ("empty", "")):
        (p.text_folder / cls).mkdir(parents=True)
        for i in range(4):
            (p.text_folder / cls / f"{i}.txt").write_text(f"{words} {i}" if words else " ")


def _runs(p: SimpleNamespace) -> None:
    root = p.root
    p.trunc = root / "trunc"
    shutil.copytree(p.run, p.trunc)
    w = p.trunc / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    p.badcfg = root / "badcfg"
    shutil.copytree(p.run, p.badcfg)
    (p.badcfg / "config.json").write_text("{not json")
    cfg = json.loads((p.run / "config.json").read_text())
    for name, edit in (("huge_cfg", lambda c: c["backbone"]["data_config"].__setitem__(
            "input_size", [3, 100000, 100000])),
                       ("neg_size_cfg", lambda c: c["backbone"].__setitem__("size", -5)),
                       ("zero_classes_cfg", lambda c: c["heads"][0]["config"].__setitem__(
                           "num_classes", 0))):
        d = root / name
        shutil.copytree(p.run, d)
        c = json.loads(json.dumps(cfg))
        edit(c)
        (d / "config.json").write_text(json.dumps(c))
        setattr(p, name, d)
    p.notes_run = root / "notes_run"
    shutil.copytree(p.run, p.notes_run)
    (p.notes_run / "notes.txt").write_text("my notes")
    p.user_dir = root / "user_dir"
    p.user_dir.mkdir()
    (p.user_dir / "thesis.tex").write_text("years of work")
    p.partial_owner = root / "victim"
    shutil.copytree(p.run, p.partial_owner)
    (root / "victim.partial").mkdir()
    (root / "victim.partial" / "draft.txt").write_text("not a run")
    p.a_file = root / "a_file.txt"
    p.a_file.write_text("keep me")
    p.important = root / "important.txt"
    p.important.write_text("keep me")


def _misc(p: SimpleNamespace, data_with: Callable[[Path], Path]) -> None:
    root = p.root
    p.empty_dir = root / "empty_target"
    p.empty_dir.mkdir()
    p.one_class = root / "one_class"
    shutil.copytree(p.good / "bag", p.one_class / "bag")
    p.desc = root / "desc.json"
    p.desc.write_text('{"bag": "a bag with handles", "sneaker": "", "trouser": "long legs"}')
    p.desc_ok = root / "desc_ok.json"
    p.desc_ok.write_text('{"bag": "a bag with handles", "sneaker": "a shoe", '
                         '"trouser": "long legs"}')
    p.attrs = root / "attrs.csv"
    p.attrs.write_text("class,has_legs,has_sole\nbag,0,0\nsneaker,0,1\n")
    p.fake_audio = root / "audio"
    for cls in ("yes", "no"):
        (p.fake_audio / cls).mkdir(parents=True)
        for i in range(3):
            (p.fake_audio / cls / f"{i}.wav").write_bytes(b"RIFF not really a wave file")
    p.wav = _wav_folder(root / "wav")
    p.wav_trunc = root / "wav_trunc"
    shutil.copytree(p.wav, p.wav_trunc)
    full = (p.wav / "low" / "0.wav").read_bytes()
    (p.wav_trunc / "low" / "cut.wav").write_bytes(full[:60])
    p.wav_long = root / "wav_long"
    shutil.copytree(p.wav, p.wav_long)
    import soundfile as sf

    t = np.arange(16_000 * 600) / 16_000
    sf.write(p.wav_long / "low" / "long.wav", (0.3 * np.sin(2 * np.pi * 300 * t)).astype(
        np.float32), 16_000)
    p.mixed = data_with("mixed", lambda d: [(d / c / "README.txt").write_text("about")
                                            for c in ("bag", "sneaker", "trouser")])
    p.tie = root / "tie"
    for cls in ("a", "b"):
        (p.tie / cls).mkdir(parents=True)
        shutil.copy(p.img, p.tie / cls / "x.png")
        (p.tie / cls / "x.txt").write_text("text")
    p.links = data_with("links", lambda d: (d / "bag" / "gone.png").symlink_to(
        root / "nowhere.png"))
    p.dups = data_with("dups", lambda d: shutil.copy(p.img, d / "sneaker" / "copy.png"))
    p.emoji = data_with("emoji", lambda d: shutil.move(str(d / "bag"), d / ":thumbs_up:"))
    p.tiny = root / "tiny"
    p.base = root / "base"
    for dest, classes in ((p.tiny, ("bag", "sneaker")), (p.base, ("coat", "dress"))):
        for cls in classes:
            (dest / cls).mkdir(parents=True)
            for f in sorted((p.sample / cls).glob("*.png"))[:8]:
                shutil.copy(f, dest / cls / f.name)
    p.parent = root / "parent"
    shutil.copytree(p.good, p.parent / "data")
    p.tall = root / "tall.png"
    Image.new("L", (1, 20000), 128).save(p.tall)
    p.wide = root / "wide.png"
    Image.new("L", (20000, 1), 128).save(p.wide)
    p.corrupt = data_with("corrupt", lambda d: (d / "bag" / "x.png").write_bytes(b"\x89PNG junk"))
    p.bad_png = root / "bad.png"
    p.bad_png.write_bytes(b"\x89PNG junk")
