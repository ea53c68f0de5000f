"""`transferkit export`: a run's model as one ONNX file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from transferkit.cli._app import USER_ERRORS, app, fail, out_console


@app.command("export")
def export_cmd(
    run: Annotated[Path, typer.Argument(help="Run directory.")],
    onnx: Annotated[Path, typer.Option("--onnx", help="ONNX file to write.")],
) -> None:
    """Export a run's model (preprocessed image -> probabilities) to ONNX.

    Example: transferkit export runs/a --onnx model.onnx
    """
    from transferkit.model import TransferModel

    try:
        path = TransferModel.load(run).export_onnx(onnx)
    except USER_ERRORS as exc:
        fail(exc)
    out_console.print(f"wrote {escape(str(path))}")
