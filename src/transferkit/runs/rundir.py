"""Run directories that lose nothing: an existing run is never replaced by accident, nothing
but a run is ever replaced, a replacement is swapped in only once finished, and a failed run
says that it failed and why.

- A run goes into a new (or empty) directory. One that already holds a run is refused with
  a message naming it, unless ``overwrite``: then the new run is written beside it, in
  ``<name>.partial/``, and swapped in only when it has finished, so a failure or a kill
  mid-run leaves the old run as it was.
- ``overwrite`` replaces only a directory that is recognisably a transferkit run: every
  entry in it is one a command writes (see :func:`foreign_entries`). A directory holding
  anything else (a data folder, a parent of runs, a user's notes) is refused, naming what
  it holds, and so is the data being read or a folder above it.
- One writer per ``--out`` at a time: a lock beside the directory (``.<name>.lock``) makes
  a second concurrent command say that the directory is in use.
- A run that fails after saving something it can resume from (a training checkpoint) leaves
  ``failed.json`` (the error, the time) in its directory; such a directory holds no run and
  may be written again without ``overwrite``. A run that fails (or is interrupted) before
  that leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from transferkit._io import make_dir, write_json_atomic
from transferkit.errors import RunError

FAILED = "failed.json"
RUN_ARGS = "run_args.json"
PARTIAL_SUFFIX = ".partial"
LOCK_SUFFIX = ".lock"
#: files whose presence means a directory holds (part of) a run
RUN_MARKERS = ("config.json", "model.safetensors", "metrics.json", "report.html",
               "run_args.json", "comparison.json", "auto.json", "checkpoints", FAILED)
#: every file a command writes at the top of a run directory
RUN_FILES = frozenset({"config.json", "model.safetensors", "metrics.json", "report.html",
                       "run_args.json", "comparison.json", "auto.json", FAILED,
                       "melspectrogram.onnx"})
#: folders of a run whose contents are the run's own (a checkpoint, a list of runs)
CHECKPOINTS, RUNS = "checkpoints", "runs"


def holds_run(path: Path) -> bool:
    """True when ``path`` is a directory with something of a run (or anything else) in it,
    a failed run excepted."""
    if not path.exists() and not path.is_symlink():
        return False
    if not path.is_dir():
        return True
    entries = [p.name for p in path.iterdir()]
    if FAILED in entries and "config.json" not in entries:
        return False  # a failed run: nothing worth keeping
    return bool(entries)


def _own_file(name: str) -> bool:
    """A file name a run writes (or a temporary one of an atomic write)."""
    return name in RUN_FILES or (name.startswith(".") and name.endswith((".tmp", LOCK_SUFFIX)))


def foreign_entries(path: Path, *, limit: int = 5) -> list[Path]:
    """What in ``path`` no transferkit command wrote: [] for an empty directory or a
    recognisable run (its files, checkpoints and sub-runs); ``[path]`` for something that
    is not a directory, or one without any run file; otherwise the odd entries (up to
    ``limit``)."""
    if path.is_symlink() or not path.is_dir():
        return [path]
    entries = sorted(path.iterdir())
    if not entries:
        return []
    if not any(e.name in RUN_MARKERS for e in entries):
        return [path]
    odd: list[Path] = []
    for e in entries:
        if len(odd) >= limit:
            break
        if e.is_symlink():
            odd.append(e)
        elif e.is_file():
            if not _own_file(e.name):
                odd.append(e)
        elif e.name == CHECKPOINTS:
            odd += [f for f in e.rglob("*") if f.is_symlink()
                    or (f.is_file() and f.suffix not in (".pt", ".tmp", ".json"))]
        elif e.name == RUNS:
            for sub in sorted(e.iterdir()):
                odd += foreign_entries(sub, limit=limit)
        else:  # a sub-run: eval-<role>, task-<name>, a ladder's rung, the demo's baseline
            odd += foreign_entries(e, limit=limit)
    return odd[:limit]


def is_run(path: Path) -> bool:
    """True for a directory that is recognisably a transferkit run (and holds nothing else)."""
    return path.is_dir() and not path.is_symlink() and any(path.iterdir()) \
        and not foreign_entries(path)


def failure(path: Path) -> dict | None:
    """The failure record of a run directory, if the run failed."""
    f = Path(path) / FAILED
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"error": "unreadable failure record"}


def resumable(path: Path) -> bool:
    """True when ``path`` holds a training checkpoint that ``fit --resume`` continues from."""
    ck = Path(path) / CHECKPOINTS
    return ck.is_dir() and any(f.is_file() and f.suffix == ".pt" for f in ck.rglob("*"))


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


def _resolved(p: str | Path) -> Path | None:
    try:
        return Path(p).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        return None


def check_not_input(out: Path, inputs: Iterable[Any], option: str = "--out") -> None:
    """Refuse an ``out`` that is one of the ``inputs`` being read, or a folder above one."""
    o = _resolved(out)
    if o is None:
        return
    for src in inputs:
        if src is None or not isinstance(src, (str, Path)):
            continue
        s = _resolved(src)
        if s is not None and (s == o or s.is_relative_to(o)):
            what = "is" if s == o else "holds"
            raise RunError(f"{out}: {what} {src}, which this command reads; a run is never "
                           f"written over its own input: choose another {option}")


def _refuse_foreign(out: Path, odd: list[Path], option: str) -> None:
    shown = ", ".join(str(p) if p == out else str(p.relative_to(out)) for p in odd)
    what = (f"it holds files no transferkit command wrote ({shown})" if odd != [out]
            else "it is not a transferkit run directory" if out.is_dir()
            else "it is a file, not a run directory")
    raise RunError(f"{out}: --overwrite replaces only a transferkit run, and {what}; "
                   f"nothing was changed: choose another {option}")


def _clear(path: Path) -> None:
    """Remove the contents of a failed run (its own files only; checked by the caller)."""
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def preflight(out: str | Path, *, overwrite: bool = False, what: str = "run",
              option: str = "--out", inputs: Iterable[Any] = ()) -> None:
    """The checks of :func:`run_directory`, changing nothing: for commands to refuse an
    ``out`` before any heavy work."""
    check_not_input(Path(out), inputs, option)
    _target(Path(out), overwrite, what, option, dry=True)


def _target(out: Path, overwrite: bool, what: str, option: str, dry: bool = False) -> Path:
    """Where the new run is written: ``out`` itself, or ``<out>.partial`` beside an existing
    run (checks that nothing but a run is ever replaced; ``dry``: remove nothing)."""
    if holds_run(out):
        if not overwrite:
            raise RunError(f"{out}: already holds {_kind(out)} ({_describe(out)}); pass "
                           f"--overwrite to replace it (the new {what} is written beside it "
                           f"and swapped in only when it has finished), or choose another "
                           f"{option}")
        odd = foreign_entries(out)
        if odd:
            _refuse_foreign(out, odd, option)
        target = out.with_name(out.name + PARTIAL_SUFFIX)
        if target.exists() or target.is_symlink():
            odd = foreign_entries(target)
            if odd:
                raise RunError(f"{target}: in the way of the replacement of {out} and not an "
                               f"unfinished transferkit run ({odd[0]}); move it away")
            if not dry:
                shutil.rmtree(target)  # an earlier replacement that never finished
        return target
    if failure(out) is not None:  # a failed run holds nothing worth keeping: start afresh
        odd = foreign_entries(out)
        if odd:
            _refuse_foreign(out, odd, option)
        if not dry:
            _clear(out)
    return out


@contextmanager
def run_directory(out: str | Path, *, overwrite: bool = False, what: str = "run",
                  option: str = "--out", inputs: Iterable[Any] = ()) -> Iterator[Path]:
    """The directory to write a new run into, swapped into place at the end (see module doc).

    Yields ``out`` itself when it is new, empty or a failed run; with ``overwrite`` and an
    existing run, yields ``<out>.partial`` and renames it to ``out`` when the block ends
    without error (the old run is removed only then). ``inputs``: paths the command reads
    (data, a run); ``out`` may be none of them nor a folder above one. An error inside the
    block leaves ``failed.json`` in the directory written to when it holds a checkpoint to
    resume from; otherwise the directory is removed (an ``out`` that existed empty is left
    empty). Then the error is re-raised.
    """
    out = Path(out)
    check_not_input(out, inputs, option)
    with out_lock(out, option):
        target = _target(out, overwrite, what, option)
        existed = target.is_dir()
        make_dir(target)
        try:
            yield target
        except BaseException as exc:
            _after_failure(target, exc, existed)
            raise
        if target != out:
            swap_in(target, out)


def _after_failure(target: Path, exc: BaseException, existed: bool) -> None:
    """Keep a resumable run (with ``failed.json``), else leave nothing behind; on Ctrl-C say
    what happened and how to continue."""
    keep = resumable(target)
    if keep and not isinstance(exc, KeyboardInterrupt):
        record_failure(target, exc)
    elif not keep and not foreign_entries(target):
        if existed:
            _clear(target)
        else:
            shutil.rmtree(target, ignore_errors=True)
    if isinstance(exc, KeyboardInterrupt):
        say_interrupted(target, keep)


def say_interrupted(where: Path, keep: bool) -> None:
    """One line on stderr after Ctrl-C: whether the run can be resumed, and how."""
    line = (f"interrupted: the run can be resumed from its last checkpoint with: "
            f"transferkit fit --resume {where}" if keep else
            "interrupted before anything worth keeping was saved: nothing was left behind")
    with suppress(OSError):
        print(line, file=sys.stderr, flush=True)


def swap_in(new: Path, out: Path) -> None:
    """Replace ``out`` by ``new`` (two renames; the old run is deleted last)."""
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    had_old = out.exists() or out.is_symlink()
    try:
        if had_old:
            os.replace(out, old)
        os.replace(new, out)
    except OSError as exc:
        raise RunError(f"{out}: could not swap in the new run from {new} ({exc.strerror}); "
                       f"the old run is in {old if old.exists() else out}") from None
    if had_old:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def out_lock(out: Path, option: str = "--out") -> Iterator[None]:
    """Hold an exclusive lock for writing ``out`` (a file ``.<name>.lock`` beside it);
    another holder makes this a RunError saying the directory is in use."""
    import fcntl

    lock = out.with_name(f".{out.name}{LOCK_SUFFIX}")
    make_dir(lock.parent)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            yield  # an unwritable parent: the write itself says so, naming the folder
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise RunError(f"{out}: in use by another transferkit command (pid {holder or '?'})"
                           f"; wait for it to finish, or choose another {option}") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed the file as we opened it: try again
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        with suppress(OSError):
            os.unlink(lock)
        os.close(fd)


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
