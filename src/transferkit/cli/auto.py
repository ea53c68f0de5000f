"""`transferkit auto`: choose backbone and strategy, explain, run, keep the better."""

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
    log,
    out_console,
    use_device,
)
from transferkit.cli._app import progress_bar as _progress
from transferkit.cli._options import DeviceOpt, NoCacheOpt, OverwriteOpt, PrecisionOpt, SeedOpt


@app.command("auto")
def auto_cmd(
    data: Annotated[Path, typer.Argument(help="Labelled data (class folders or a CSV).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for auto.json and the runs.")],
    budget: Annotated[float, typer.Option(help="Time budget in minutes (plans estimated "
                                               "to take longer run last).", min=0.1)] = 10.0,
    test: Annotated[Path | None, typer.Option(help="Labelled test data (default: a seeded "
                                                   "split; only reported).")] = None,
    backbones: Annotated[str | None, typer.Option(
        help="Comma-separated candidates (default: every installed pretrained backbone of "
             "the data's modality).")] = None,
    text_column: Annotated[str | None, typer.Option(help="Text CSV: the text column.")] = None,
    seed: SeedOpt = 0,
    no_cache: NoCacheOpt = False,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
) -> None:
    """Choose the backbone (LogME, no training) and the strategy (data size, budget), say
    why, run the choice and the runner-up, keep the better on validation data.

    Example: transferkit auto photos/ --budget 5 --out runs/auto
    """
    from transferkit.runs.auto import auto_run

    try:
        check_device(device, precision)
        cands = [b.strip() for b in backbones.split(",")] if backbones else None
        with _progress("features") as progress:
            use_device(device, precision)
            res = auto_run(data, out, budget_minutes=budget, test=test, seed=seed,
                           candidates=cands, cache=not no_cache, log=log, progress=progress,
                           overwrite=overwrite, text_column=text_column)
    except USER_ERRORS as exc:
        fail(exc)
    r = res.record
    out_console.print(escape(r["explanation"]))
    for name, v in r["results"].items():
        out_console.print(escape(f"{name}: validation {v['val_accuracy']}, test "
                                 f"{v['test_accuracy']}, {v['seconds']} s"
                                 f"{'  <- kept' if name == r['kept'] else ''}"))
    out_console.print(f"decision record: {escape(str(res.out / 'auto.json'))}\n"
                      f"kept run: {escape(str(res.chosen_run))}")
