"""The Typer application every command module registers with, and what they share: the
consoles, error printing (messages are data, never markup), progress bars and option parsing."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from transferkit.errors import TransferkitError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="transferkit: transfer learning from pretrained models to small data.")
# user strings (file names, class names, texts) are printed verbatim: no emoji shortcodes,
# no highlighting; markup only in our own fixed strings, user parts escaped or plain()
out_console = Console(emoji=False, highlight=False)
err_console = Console(stderr=True, emoji=False, highlight=False)


def _version(value: bool) -> None:
    if value:
        from transferkit import __version__

        plain(f"transferkit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version,
                                       is_eager=True, help="Print the version and exit.")
          ) -> None:
    """transferkit: transfer learning from pretrained models to small data."""


def plain(text: str) -> None:
    """One line on stdout, printed verbatim (no markup, no emoji shortcodes)."""
    out_console.print(text, markup=False, emoji=False, highlight=False, soft_wrap=True)


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on a terminal; elsewhere (logs, CI, nohup) a plain line at every
    10% and at least every 30 s, so a slow run can be told from a hung one."""
    if not err_console.is_terminal:
        state = {"t": time.perf_counter(), "t0": time.perf_counter(), "decile": -1, "done": 0}

        def line(done: int, total: int) -> None:
            now = time.perf_counter()
            if done < state["done"]:  # the next extraction of the command starts
                state.update(decile=-1, t0=now)
            state["done"] = done
            decile = 10 * done // total if total else 0
            if done and (decile > state["decile"] or now - state["t"] >= 30.0):
                state.update(t=now, decile=decile)
                log(f"{label}: {done}/{total} items ({100 * done // max(total, 1)}%, "
                    f"{now - state['t0']:.0f} s)")

        yield line
        return
    bar = Progress(TextColumn(f"[bold]{escape(label)}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("items"), TimeRemainingColumn(), console=err_console,
                   transient=True)
    task = bar.add_task(label, total=None)
    with bar:
        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


#: what a command reports as "error: ..." with exit status 2 (never a traceback)
USER_ERRORS = (TransferkitError, ValueError, OSError, MemoryError)

def check_device(device: str, precision: str) -> None:
    """Check --device/--precision by their form (cheap: before anything heavy is loaded)."""
    from transferkit.device import check_device_text, check_precision_text

    check_device_text(device)
    check_precision_text(precision)


def use_device(device: str, precision: str) -> None:
    """Compute on --device in --precision for the rest of this command (DeviceError, shown
    as one ``error:`` line, when the machine has no such device)."""
    from transferkit.device import use_defaults

    use_defaults(device, precision)



def command_options() -> set[str] | None:
    """The long options of the command being run (None outside a command)."""
    try:  # typer carries its own copy of click
        from typer._click.globals import get_current_context
    except ImportError:
        from click import get_current_context
    ctx = get_current_context(silent=True)
    if ctx is None:
        return None
    return {o for p in ctx.command.params for o in p.opts if o.startswith("--")}


#: (option, pattern of a hint that suggests it, replacement when the command lacks it)
_HINTS = (("--skip-bad", r" ?\(pass skip_bad=True / --skip-bad to [^)]*\)", ""),
          ("--out", r"choose another --out", "choose another path"),
          ("--batch-size", r"lower --batch-size( \(e\.g\. --batch-size \d+\))? or "
                           r"--image-size", "use a smaller input"),
          ("--text-column", r"pass --text-column / --label-column to name them",
           "name the columns text and label"))


def only_own_options(msg: str, options: set[str] | None) -> str:
    """``msg`` without hints that suggest options the command does not have."""
    import re

    if options is None:
        return msg
    for opt, pattern, repl in _HINTS:
        if opt not in options:
            msg = re.sub(pattern, repl, msg)
    return msg


def fail(exc: BaseException | str) -> NoReturn:
    """Print ``error: <message>`` (as plain text: brackets in file names stay) and exit 2."""
    if isinstance(exc, OSError) and exc.filename is not None:
        msg = f"{exc.filename}: {exc.strerror or exc}"
    elif isinstance(exc, MemoryError):
        msg = (f"out of memory ({exc})" if str(exc) else
               "out of memory; the input (or the model) is too large for this machine")
    else:
        msg = str(exc) or type(exc).__name__
    msg = only_own_options(msg, command_options())
    err_console.print("[bold red]error:[/] " + escape(msg), highlight=False, soft_wrap=True,
                      emoji=False)
    raise typer.Exit(code=2)


def log(line: str) -> None:
    """One progress line on stderr (plain text)."""
    err_console.print(line, highlight=False, soft_wrap=True, markup=False, emoji=False)


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


def run_app() -> None:
    """Run the command line; a usage error (a bad option value, an unknown option) is one
    ``error:`` line naming the option, exit 2, like every other bad input."""
    import sys

    try:
        from typer._click.exceptions import NoArgsIsHelpError, UsageError
        from typer.exceptions import Abort
    except ImportError:  # a typer that uses click itself
        from click.exceptions import Abort, NoArgsIsHelpError, UsageError
    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as exc:
        exc.show()
        code = exc.exit_code
    except UsageError as exc:
        hint = (f" (see 'transferkit {exc.ctx.command.name} --help')"
                if exc.ctx is not None and exc.ctx.command.name else "")
        err_console.print("[bold red]error:[/] " + escape(exc.format_message() + hint),
                          highlight=False, soft_wrap=True, emoji=False)
        code = exc.exit_code
    except Abort:
        code = 1
    except RuntimeError as exc:  # an allocation the machine cannot serve, deep in torch
        if "can't allocate memory" not in str(exc) and "out of memory" not in str(exc):
            raise
        import re

        size = re.search(r"allocate (\d+) bytes", str(exc))
        asked = f" (one allocation of {int(size.group(1)) / 2**30:.1f} GiB)" if size else ""
        err_console.print("[bold red]error:[/] " + escape(
            f"out of memory{asked}; the input (e.g. the longest clip or the largest image) "
            f"is too large for this machine"), highlight=False, soft_wrap=True, emoji=False)
        code = 2
    sys.exit(code if isinstance(code, int) else 0)
