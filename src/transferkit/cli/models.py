"""`transferkit models` and `transferkit strategies`: what can be used."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from transferkit.cli._app import app, out_console


def _listing(rows: list[dict[str, Any]], as_json: bool, title: str,
             cells: dict[str, Callable[[dict[str, Any]], str]]) -> None:
    """Rows as JSON, or as a table with one column per ``cells`` entry (plain text)."""
    if as_json:
        out_console.print_json(json.dumps(rows))
        return
    table = Table(title=title)
    for col in cells:
        table.add_column(col)
    for r in rows:
        table.add_row(*(escape(cell(r)) for cell in cells.values()))
    out_console.print(table)


@app.command("models")
def models_cmd(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
               ) -> None:
    """List the backbones that can be used, marking which work offline.

    Example: transferkit models
    """
    from transferkit.backbones import list_backbones

    _listing(list_backbones(), as_json, "transferkit backbones", {
        "name": lambda r: r["name"], "modality": lambda r: r["modality"],
        "offline": lambda r: "yes" if r["offline"] else "no (network)",
        "description": lambda r: r["description"]})


@app.command("strategies")
def strategies_cmd(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
                   ) -> None:
    """List the transfer strategies: what each does, the data it takes, its options.

    Example: transferkit strategies
    """
    from transferkit.strategies import list_strategies

    _listing(list_strategies(), as_json, "transferkit strategies (fit --strategy NAME)", {
        "name": lambda r: r["name"], "modalities": lambda r: ", ".join(r["modalities"]),
        "data": lambda r: ", ".join(r["roles"]), "description": lambda r: r["description"],
        "options": lambda r: ", ".join(r["options"])})
