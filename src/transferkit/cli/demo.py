"""`transferkit demo`: pretrained features vs raw pixels on the bundled sample, offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from transferkit.cli._app import (
    USER_ERRORS,
    app,
    check_device,
    fail,
    log,
    out_console,
    progress_bar,
    use_device,
)
from transferkit.cli._options import DeviceOpt, OverwriteOpt, PrecisionOpt


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option(help="Run directory for the demo.")] = Path("demo-run"),
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
) -> None:
    """Offline demo: pretrained features vs raw pixels on a bundled Fashion-MNIST sample.

    Example: transferkit demo --out demo-run --overwrite
    """
    from transferkit.runs.demo import run_demo

    try:
        check_device(device, precision)
        use_device(device, precision)
        with progress_bar("features") as progress:
            res = run_demo(out, progress=progress, log=log, overwrite=overwrite)
    except USER_ERRORS as exc:
        fail(exc)
    table = Table(title=f"Fashion-MNIST sample: {res['train_size']} training images, "
                        f"{res['test_size']} test images (same split)")
    for col in ("model", "accuracy", "balanced acc.", "macro F1", "time (s)"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in res["rows"]:
        table.add_row(r["model"], f"{r['accuracy']:.3f}", f"{r['balanced_accuracy']:.3f}",
                      f"{r['macro_f1']:.3f}", f"{r['seconds']:.1f}")
    out_console.print(table)
    out_console.print(f"report: {escape(str(res['report']))}")
