"""Every command of the command line, found from the Typer app itself (a new command is
covered without editing this file): its ``--help`` lists every option, an unknown option is
refused before anything is written, and ``--resume`` either resumes or is refused, as is an
``--out`` that already holds a run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from transferkit.cli import app
from transferkit.data.samples import fashion_mnist_classes, fashion_mnist_sample

runner = CliRunner()
SAMPLE = fashion_mnist_sample()
COMMANDS = typer.main.get_command(app).commands  # type: ignore[attr-defined]


def _options(name: str) -> list[str]:
    return [o for p in COMMANDS[name].params for o in p.opts if o.startswith("--")]


def _arguments(name: str, tmp_path: Path) -> list[str]:
    """A placeholder path for each positional argument (never read: parsing fails first)."""
    return [str(tmp_path / p.name) for p in COMMANDS[name].params
            if p.param_type_name == "argument" and p.required]


#: each command that writes --out: arguments of a real, small run of it (besides --out)
REAL_ARGS: dict[str, Callable[[Path, Path], list[str]]] = {
    "adapt": lambda d, run: [str(d), str(d), "--backbone", "pixels"],
    "auto": lambda d, run: [str(d), "--backbones", "pixels"],
    "compare": lambda d, run: [str(d)],
    "demo": lambda d, run: [],
    "evaluate": lambda d, run: [str(run), str(d)],
    "fewshot": lambda d, run: [str(d), "--backbone", "pixels"],
    "fit": lambda d, run: [str(d), "--backbone", "pixels"],
    # (36 images are too few for multitask today: no validation data, and its log line
    # formats the missing validation accuracy; the bundled sample is used instead)
    "multitask": lambda d, run: ["--task", f"a={SAMPLE}", "--task", f"b={SAMPLE}", "--backbone",
                                 "cnn", "--image-size", "16", "--epochs", "1", "--no-baselines"],
    "zeroshot": lambda d, run: [str(d), "--unseen", "bag", "--backbone", "pixels",
                                "--classes", str(fashion_mnist_classes()[0])],
}


@pytest.fixture(scope="module")
def pixel_run(small_image_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("pixel-run") / "run"
    res = runner.invoke(app, ["fit", str(small_image_dir), "--out", str(run), "--backbone",
                              "pixels"])
    assert res.exit_code == 0, res.output
    return run


def test_the_app_has_the_commands_we_document() -> None:
    assert {"fit", "adapt", "fewshot", "zeroshot", "multitask", "auto", "compare", "rank",
            "evaluate", "predict", "export", "demo", "models", "strategies"} <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_lists_every_option(name: str) -> None:
    res = runner.invoke(app, [name, "--help"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "Usage:" in res.output and f" {name} " in res.output
    missing = [o for o in _options(name) if o != "--help" and o not in res.output]
    assert not missing, (name, missing)
    assert (COMMANDS[name].help or "").split("\n")[0].strip()[:40] in " ".join(
        res.output.split())  # the command's own summary


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_an_unknown_option_is_refused_before_anything_happens(name: str,
                                                              tmp_path: Path) -> None:
    out = ["--out", str(tmp_path / "out")] if "--out" in _options(name) else []
    res = runner.invoke(app, [name, *_arguments(name, tmp_path), *out, "--no-such-option",
                              "1"])
    assert res.exit_code == 2, res.output
    assert "No such option: --no-such-option" in " ".join(res.output.split())
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_resume_resumes_or_is_refused(name: str, tmp_path: Path, small_image_dir: Path,
                                      pixel_run: Path) -> None:
    """``--resume`` of a folder with nothing to resume is an error naming it (a command that
    cannot resume refuses the option); an ``--out`` holding a run is refused, untouched."""
    opts = _options(name)
    if "--resume" in opts:
        res = runner.invoke(app, [name, "--resume", str(tmp_path / "nothing")])
        assert res.exit_code == 2 and "nothing to resume" in res.output, res.output
    else:
        res = runner.invoke(app, [name, *_arguments(name, tmp_path), "--resume",
                                  str(tmp_path / "nothing")])
        assert res.exit_code == 2 and "No such option: --resume" in res.output, res.output
    if "--out" not in opts:
        return
    assert name in REAL_ARGS, f"add the command {name!r} to REAL_ARGS"
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text(json.dumps({"kept": True}))
    (old / "metrics.json").write_text(json.dumps({"accuracy": 0.5}))
    res = runner.invoke(app, [name, *REAL_ARGS[name](small_image_dir, pixel_run), "--out",
                              str(old)])
    assert res.exit_code == 2, res.output
    assert "already holds a run" in " ".join(res.output.split()), res.output
    assert sorted(p.name for p in old.iterdir()) == ["config.json", "metrics.json"]
    assert json.loads((old / "config.json").read_text()) == {"kept": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]  # no .partial left
