"""`transferkit rank`: which backbone (or stage) to transfer from, scored without training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

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
    use_device,
)
from transferkit.cli._options import DeviceOpt, NoCacheOpt, PrecisionOpt, SeedOpt


@app.command("rank")
def rank_cmd(
    data: Annotated[Path, typer.Argument(help="Labelled data (class folders or a CSV).")],
    backbones: Annotated[str, typer.Option(
        help="Comma-separated candidates ('transferkit models'), e.g. "
             "efficientnet_lite0,efficientnet_lite1,pixels.")] = "efficientnet_lite0,pixels",
    scores: Annotated[str, typer.Option(help="Comma-separated: logme, hscore, transrate; "
                                             "the first sorts the table.")
                      ] = "logme,hscore,transrate",
    stages: Annotated[str | None, typer.Option(
        help="Also score each candidate cut after these many stages, e.g. 4,6.")] = None,
    source: Annotated[bool, typer.Option(
        "--source", help="Also LEEP and NCE from candidates with an ImageNet head.")] = False,
    verify: Annotated[bool, typer.Option(
        "--verify", help="Also fit the linear probe on 75% and report its accuracy on the "
                         "other 25%, to check the ranking.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")
                       ] = False,
    seed: SeedOpt = 0,
    no_cache: NoCacheOpt = False,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
) -> None:
    """Rank candidate backbones for DATA by transferability scores (no training).

    Example: transferkit rank photos/ --backbones efficientnet_lite0,efficientnet_lite1,
    efficientnet_lite2,pixels --verify
    """
    try:
        check_device(device, precision)
        from transferkit.backbones.registry import resolve_backbone

        names = [b.strip() for b in backbones.split(",") if b.strip()]
        if not names:
            raise ValueError("--backbones: name at least one backbone")
        for n in names:
            resolve_backbone(n)
        try:
            cuts = [int(s) for s in stages.split(",")] if stages else []
        except ValueError:
            raise ValueError(f"--stages {stages!r}: expected whole numbers separated by "
                             f"commas, e.g. 4,6") from None
        use_device(device, precision)
        from transferkit.runs.rank import rank_run

        rows = rank_run(data, names, scores=[s.strip() for s in scores.split(",")],
                        stages=cuts, verify=verify, source=source, seed=seed,
                        cache=not no_cache, log=None if as_json else log)
    except USER_ERRORS as exc:
        fail(exc)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    _print_rows(rows, f"candidates for {data}, best first")


def _print_rows(rows: list[dict[str, Any]], title: str) -> None:
    """The candidates' scores as a table, in the order given."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    table = Table(title=escape(title))
    for c in cols:
        table.add_column(escape(c), justify="left" if c == "candidate" else "right")
    for r in rows:
        table.add_row(*[escape("n/a" if r.get(c) is None else f"{r[c]:.4g}"
                               if isinstance(r.get(c), float) else str(r.get(c)))
                        for c in cols])
    out_console.print(table)
