"""The Typer application every command module registers with, and what they share: the
consoles, error printing (messages are data, never markup), progress bars and option parsing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="transferkit: transfer learning from pretrained models to small data.")
out_console = Console()
err_console = Console(stderr=True)


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on a terminal; silent otherwise."""
    bar = Progress(TextColumn(f"[bold]{escape(label)}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("items"), TimeRemainingColumn(), console=err_console,
                   transient=True, disable=not err_console.is_terminal)
    task = bar.add_task(label, total=None)
    with bar:
        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def fail(exc: Exception | str) -> NoReturn:
    """Print ``error: <message>`` (as plain text: brackets in file names stay) and exit 2."""
    err_console.print("[bold red]error:[/] " + escape(str(exc)), highlight=False,
                      soft_wrap=True)
    raise typer.Exit(code=2)


def log(line: str) -> None:
    """One progress line on stderr (plain text)."""
    err_console.print(line, highlight=False, soft_wrap=True, markup=False)


def parse_value(text: str) -> Any:
    """An option value from the command line: int, float, true/false, none, else the text."""
    low = text.strip().lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    if low in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` pairs (``--option``) as strategy parameters (dashes become underscores)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--option {pair!r}: expected KEY=VALUE, e.g. --option l2sp=0.1")
        out[key.strip().lstrip("-").replace("-", "_")] = parse_value(value)
    return out


def print_metrics(m: dict[str, Any], label: str) -> None:
    """The headline metrics of an evaluation as a table."""
    table = Table(title=f"metrics on {escape(label)}")
    for col in ("accuracy", "balanced accuracy", "macro F1", "ROC AUC (OvR)", "skipped"):
        table.add_column(col, justify="right")
    auc = m.get("roc_auc_ovr_macro")
    table.add_row(f"{m['accuracy']:.4f}", f"{m['balanced_accuracy']:.4f}", f"{m['macro_f1']:.4f}",
                  "n/a" if auc is None else f"{auc:.4f}",
                  str(len(m.get("skipped_files", [])) + len(m.get("train_skipped_files", []))))
    out_console.print(table)
