"""`transferkit evaluate`: a saved run on new labelled data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from transferkit.cli._app import (
    USER_ERRORS,
    app,
    check_device,
    fail,
    out_console,
    print_metrics,
    progress_bar,
    use_device,
)
from transferkit.cli._options import DeviceOpt, PrecisionOpt, SkipBadOpt


@app.command("evaluate")
def evaluate_cmd(
    run: Annotated[Path, typer.Argument(help="Run directory written by 'transferkit fit'.")],
    data: Annotated[Path, typer.Argument(help="Labelled image folder or CSV.")],
    out: Annotated[Path | None, typer.Option(help="Where to write metrics.json and "
                                                  "report.html (default RUN/eval-<DATA>).")
                   ] = None,
    skip_bad: SkipBadOpt = False,
    text_column: Annotated[str | None, typer.Option(help="Text CSV: the text column.")
                           ] = None,
    label_column: Annotated[str, typer.Option(help="CSV: the label column.")] = "label",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier "
                                            "evaluation in the output folder.")] = False,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
) -> None:
    """Evaluate a saved run on labelled data: metrics.json and report.html.

    Example: transferkit evaluate runs/a new_photos/
    """
    from transferkit.runs import evaluate_run

    try:
        check_device(device, precision)
        use_device(device, precision)
        with progress_bar("features") as progress:
            ev = evaluate_run(run, data, out, skip_bad=skip_bad, progress=progress,
                              text_column=text_column, label_column=label_column,
                              overwrite=overwrite)
    except USER_ERRORS as exc:
        fail(exc)
    print_metrics(ev.metrics, f"{data} ({len(ev.y_true)} items)")
    out_console.print(f"report: {escape(str(ev.report_path))}")
