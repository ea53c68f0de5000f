"""Run directories that lose nothing: an existing run is never replaced by accident, a
replacement is swapped in only once finished, and a failed run says that it failed and why.

- A run goes into a new (or empty) directory. One that already holds a run is refused with
  a message naming it, unless ``overwrite``: then the new run is written beside it, in
  ``<name>.partial/``, and swapped in only when it has finished, so a failure or a kill
  mid-run leaves the old run as it was.
- A run that fails leaves ``failed.json`` (the error, the time) in its directory; such a
  directory holds no run and may be written again without ``overwrite``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from transferkit._io import make_dir, write_json_atomic
from transferkit.errors import RunError

FAILED = "failed.json"
PARTIAL_SUFFIX = ".partial"
#: files whose presence means a directory holds (part of) a run
RUN_MARKERS = ("config.json", "model.safetensors", "metrics.json", "report.html",
               "run_args.json", "comparison.json", "checkpoints")


def holds_run(path: Path) -> bool:
    """True when ``path`` is a directory with something of a run (or anything else) in it,
    a failed run excepted."""
    if not path.exists():
        return False
    if not path.is_dir():
        return True
    entries = [p.name for p in path.iterdir()]
    if FAILED in entries and "config.json" not in entries:
        return False  # a failed run: nothing worth keeping
    return bool(entries)


def failure(path: Path) -> dict | None:
    """The failure record of a run directory, if the run failed."""
    f = Path(path) / FAILED
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"error": "unreadable failure record"}


def record_failure(path: Path, exc: BaseException) -> None:
    """Write ``failed.json`` into ``path`` (best effort: the original error matters more)."""
    try:
        if path.is_dir():
            write_json_atomic(path / FAILED, {
                "error": str(exc) or type(exc).__name__, "type": type(exc).__name__,
                "time": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                "where": traceback.format_exception_only(type(exc), exc)[-1].strip()})
    except (OSError, RunError):
        pass


@contextmanager
def run_directory(out: str | Path, *, overwrite: bool = False, what: str = "run",
                  option: str = "--out") -> Iterator[Path]:
    """The directory to write a new run into, swapped into place at the end (see module doc).

    Yields ``out`` itself when it is new, empty or a failed run; with ``overwrite`` and an
    existing run, yields ``<out>.partial`` and renames it to ``out`` when the block ends
    without error (the old run is removed only then). An error inside the block leaves
    ``failed.json`` in the directory written to, and re-raises.
    """
    out = Path(out)
    target = out
    if holds_run(out):
        if not overwrite:
            raise RunError(f"{out}: already holds {_kind(out)} ({_describe(out)}); pass "
                           f"--overwrite to replace it (the new {what} is written beside it "
                           f"and swapped in only when it has finished), or choose another "
                           f"{option}")
        target = out.with_name(out.name + PARTIAL_SUFFIX)
        if target.exists():
            shutil.rmtree(target)  # an earlier replacement that never finished
    elif failure(out) is not None:  # a failed run holds nothing worth keeping: start afresh
        for child in out.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    make_dir(target)
    try:
        yield target
    except BaseException as exc:
        if not isinstance(exc, KeyboardInterrupt):
            record_failure(target, exc)
        raise
    if target != out:
        swap_in(target, out)


def swap_in(new: Path, out: Path) -> None:
    """Replace ``out`` by ``new`` (two renames; the old run is deleted last)."""
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    try:
        os.replace(out, old)
        os.replace(new, out)
    except OSError as exc:
        raise RunError(f"{out}: could not swap in the new run from {new} ({exc.strerror}); "
                       f"the old run is in {old if old.exists() else out}") from None
    shutil.rmtree(old, ignore_errors=True)


def _kind(path: Path) -> str:
    """What an existing directory holds, in words: a run, a comparison, an evaluation."""
    if not path.is_dir():
        return "a file"
    names = {p.name for p in path.iterdir()}
    if "comparison.json" in names:
        return "a comparison"
    if "config.json" in names or "run_args.json" in names:
        return "a run"
    if "metrics.json" in names or "report.html" in names:
        return "an evaluation"
    return "other files"


def _describe(path: Path) -> str:
    if not path.is_dir():
        return "a file, not a directory"
    names = sorted(p.name for p in path.iterdir())
    marks = [n for n in names if n in RUN_MARKERS]
    shown = marks or names
    more = f", +{len(names) - len(shown[:4])} more" if len(names) > len(shown[:4]) else ""
    return ", ".join(shown[:4]) + more


class HasReport:
    """A command's result that wrote ``out/report.html``."""

    out: Path

    @property
    def report_path(self) -> Path:
        """The report."""
        return self.out / "report.html"
