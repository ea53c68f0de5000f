"""`transferkit models` and `transferkit strategies`: what can be used."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from transferkit.cli._app import app, out_console


@app.command("models")
def models_cmd(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
               ) -> None:
    """List the backbones that can be used, marking which work offline.

    Example: transferkit models
    """
    from transferkit.backbones import list_backbones

    rows = list_backbones()
    if as_json:
        out_console.print_json(json.dumps(rows))
        return
    table = Table(title="transferkit backbones")
    for col in ("name", "modality", "offline", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(escape(r["name"]), r["modality"],
                      "yes" if r["offline"] else "no (network)", escape(r["description"]))
    out_console.print(table)


@app.command("strategies")
def strategies_cmd(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
                   ) -> None:
    """List the transfer strategies: what each does, the data it takes, its options.

    Example: transferkit strategies
    """
    from transferkit.strategies import list_strategies

    rows = list_strategies()
    if as_json:
        out_console.print_json(json.dumps(rows))
        return
    table = Table(title="transferkit strategies (fit --strategy NAME)")
    for col in ("name", "modalities", "data", "description", "options"):
        table.add_column(col)
    for r in rows:
        table.add_row(escape(r["name"]), ", ".join(r["modalities"]), ", ".join(r["roles"]),
                      escape(r["description"]), escape(", ".join(r["options"])))
    out_console.print(table)
