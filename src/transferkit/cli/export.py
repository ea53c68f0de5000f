"""`transferkit export`: a run's model as one ONNX file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from transferkit.cli._app import USER_ERRORS, app, fail, plain


def check_export_target(run: Path, onnx: Path, overwrite: bool) -> None:
    """Refuse an ONNX target inside a run directory (the run's own files are never replaced)
    and an existing file unless ``overwrite``."""
    from transferkit.errors import RunError
    from transferkit.runs.rundir import RUN_MARKERS

    target = onnx.expanduser().resolve()
    if target.is_dir():
        raise RunError(f"{onnx}: is a directory; --onnx names the file to write, e.g. "
                       f"{onnx / 'model.onnx'}")
    run_dir = run.expanduser().resolve()
    for folder in target.parents:
        if folder == run_dir or ((folder / "config.json").is_file() and any(
                (folder / m).exists() for m in RUN_MARKERS if m != "config.json")):
            raise RunError(f"{onnx}: inside the run directory {folder}; export never writes "
                           f"into a run (its files are the run's own): choose a path outside "
                           f"it")
    if (target.exists() or onnx.is_symlink()) and not overwrite:
        raise RunError(f"{onnx}: already exists; pass --overwrite to replace it, or choose "
                       f"another --onnx path")


@app.command("export")
def export_cmd(
    run: Annotated[Path, typer.Argument(help="Run directory.")],
    onnx: Annotated[Path, typer.Option("--onnx", help="ONNX file to write (outside the run "
                                                      "directory).")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --onnx "
                                                                "file.")] = False,
) -> None:
    """Export a run's model (preprocessed image -> probabilities) to ONNX.

    Example: transferkit export runs/a --onnx model.onnx
    """
    from transferkit.model import TransferModel

    try:
        model = TransferModel.load(run)
        check_export_target(run, onnx, overwrite)
        path = model.export_onnx(onnx)
    except USER_ERRORS as exc:
        fail(exc)
    plain(f"wrote {path}")
