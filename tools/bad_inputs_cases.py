"""The cases of tools/bad_inputs.py: a name, the command line, the expected class (clear
error, clean skip, handled) and what the answer must contain (a file, an option, a note)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

ERR, SKIP, OK = "clear error", "clean skip", "handled"


@dataclass
class Case:
    """One command line and what a good answer looks like."""

    name: str
    argv: list[str]
    kind: str = ERR
    needle: str | None = None  # must appear in the output (the file, option or note)
    check: Callable[[], str | None] | None = None  # a problem found afterwards, or None
    code: int = 0  # the exit status of a handled case
    absent: str | None = None  # must not appear in the output
    max_mb: float | None = None  # peak memory (RSS, MB) the command must stay under


def unchanged(*paths: Path) -> Callable[[], str | None]:
    """A check that the files below ``paths`` are still all there, byte for byte."""
    def snap() -> dict[str, bytes]:
        return {str(f): f.read_bytes() for p in paths for f in sorted(Path(p).rglob("*"))
                if f.is_file()}

    before = snap()
    return lambda: None if snap() == before else "LOST FILES"


def absent(path: Path) -> Callable[[], str | None]:
    """A check that a failed command left nothing at ``path``."""
    return lambda: None if not path.exists() else f"left {path.name} behind"


def original(p: SimpleNamespace) -> list[Case]:
    """The first 40 cases (round one)."""
    return _original_data(p) + _original_runs(p)


def _original_data(p: SimpleNamespace) -> list[Case]:
    r, good, dw = p.root, str(p.good), p.data_with
    return [
        Case("adapt: empty target folder", ["adapt", good, str(p.empty_dir), "--backbone",
                                            "lenet", "--out", str(r / "a1")]),
        Case("adapt: image source, text target", ["adapt", good, str(p.texts), "--backbone",
                                                  "lenet", "--out", str(r / "a2")]),
        Case("fewshot: 5 ways from 3 classes", ["fewshot", good, "--ways", "5", "--shots", "1",
                                                "--backbone", "pixels", "--out",
                                                str(r / "f1")]),
        Case("zeroshot: an empty description", ["zeroshot", good, "--unseen", "sneaker",
                                                "--classes", str(p.desc), "--backbone",
                                                "pixels", "--out", str(r / "z1")]),
        Case("zeroshot: attribute table misses a class", [
            "zeroshot", good, "--unseen", "sneaker", "--attributes", str(p.attrs), "--method",
            "eszsl", "--backbone", "pixels", "--out", str(r / "z2")]),
        Case("multitask: the same task name twice", ["multitask", "--task", f"a={good}",
                                                     "--task", f"a={good}", "--out",
                                                     str(r / "m1")]),
        Case("multitask: an image task and a text task", [
            "multitask", "--task", f"img={good}", "--task", f"txt={p.texts}", "--backbone",
            "pixels", "--out", str(r / "m2")]),
        Case("rank: a single class", ["rank", str(p.one_class), "--backbones", "pixels"]),
        Case("audio: WAV files that are not audio", ["fit", str(p.fake_audio), "--backbone",
                                                     "speech_embedding", "--out",
                                                     str(r / "s1")], needle="0.wav"),
        Case("missing data folder", ["fit", str(r / "nope"), "--out", str(r / "o1")],
             needle="nope"),
        Case("flat folder of images (no classes)", ["fit", str(p.good / "bag"), "--out",
                                                    str(r / "o2")]),
        Case("corrupt PNG", ["fit", str(p.corrupt), "--out", str(r / "o3"), "--backbone",
                             "pixels"], needle="x.png", check=absent(r / "o3")),
        Case("corrupt PNG with --skip-bad", ["fit", str(p.corrupt), "--out", str(r / "o4"),
                                             "--backbone", "pixels", "--skip-bad"], SKIP,
             needle="skipped"),
        Case("decompression bomb PNG", ["fit", str(dw("bomb", lambda d: _bomb(d))), "--out",
                                        str(r / "o5"), "--backbone", "pixels"],
             needle="bomb.png"),
        Case("decompression bomb with --skip-bad", ["fit", str(r / "bomb"), "--out",
                                                    str(r / "o6"), "--backbone", "pixels",
                                                    "--skip-bad"], SKIP, needle="skipped"),
        Case("empty class folder", ["fit", str(dw("empty", lambda d: (d / "gravel").mkdir())),
                                    "--out", str(r / "o7"), "--backbone", "pixels"], SKIP,
             needle="gravel: class folder without images"),
    ]


def _original_runs(p: SimpleNamespace) -> list[Case]:
    r, good, run, dw = p.root, str(p.good), str(p.run), p.data_with
    return [
        Case("existing run as --out", ["fit", good, "--out", run, "--backbone", "pixels"],
             needle="--overwrite"),
        Case("read-only --out (/proc)", ["fit", good, "--out", "/proc/tk-run", "--backbone",
                                         "pixels"], needle="/proc/tk-run"),
        Case("unknown backbone", ["fit", good, "--out", str(r / "o8"), "--backbone",
                                  "efficientnet-lite9"], needle="efficientnet_lite"),
        Case("unknown strategy", ["fit", good, "--out", str(r / "o9"), "--strategy",
                                  "finetuning"], needle="finetuning"),
        Case("option the strategy does not take", ["fit", good, "--out", str(r / "o10"),
                                                   "--l2sp", "0.1"], needle="l2sp"),
        Case("--image-size 0", ["fit", good, "--out", str(r / "o11"), "--strategy",
                                "finetune", "--image-size", "0"], needle="--image-size"),
        Case("--freeze 99", ["fit", good, "--out", str(r / "o12"), "--strategy", "finetune",
                             "--freeze", "99", "--backbone", "cnn"], needle="freeze"),
        Case("--test-fraction 2", ["fit", good, "--out", str(r / "o13"), "--test-fraction",
                                   "2", "--backbone", "pixels"], needle="--test-fraction"),
        Case("bad -o value", ["fit", good, "--out", str(r / "o14"), "-o", "novalue"],
             needle="novalue"),
        Case("text CSV not UTF-8", ["fit", str(p.latin), "--out", str(r / "o15")],
             needle="latin.csv"),
        Case("text data on an image backbone", ["fit", str(p.texts), "--out", str(r / "o16"),
                                                "--backbone", "pixels"], needle="texts.csv"),
        Case("resume of a finished run", ["fit", "--resume", run], needle="already finished"),
        Case("resume of a folder that is no run", ["fit", "--resume", good],
             needle="nothing to resume"),
        Case("predict with truncated weights", ["predict", str(p.trunc), str(p.img)],
             needle="model.safetensors"),
        Case("predict with unreadable config", ["predict", str(p.badcfg), str(p.img)],
             needle="config.json"),
        Case("predict on a non-run folder", ["predict", good, str(p.img)],
             needle="not a transferkit run"),
        Case("predict a missing image", ["predict", run, str(r / "nope.png")],
             needle="nope.png"),
        Case("predict --text on an image run", ["predict", run, "--text", "hello"],
             needle="--text"),
        Case("evaluate with an unknown class", ["evaluate", run, str(dw(
            "zebra", lambda d: shutil.copytree(d / "bag", d / "zebra"))), "--out",
            str(r / "e1")], needle="zebra"),
        Case("evaluate into the run it reads", ["evaluate", run, good, "--out", run],
             needle="which this command reads"),
        Case("compare with an unknown rung", ["compare", good, "--out", str(r / "c1"),
                                              "--rungs", "frozen,bogus"], needle="bogus"),
        Case("export to an unwritable path", ["export", run, "--onnx", "/proc/tk.onnx"],
             needle="/proc/tk.onnx"),
        Case("class named like markup", ["fit", str(dw(
            "markup", lambda d: shutil.move(str(d / "bag"), d / "[/science]"))), "--out",
            str(r / "o17"), "--backbone", "pixels"], OK),
    ]


def _bomb(d: Path) -> None:
    from bad_inputs_data import bomb

    bomb(d / "bag" / "bomb.png")
