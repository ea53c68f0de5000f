"""Resuming a killed run: its saved options (an option given again must agree with them),
where it finishes (where it is now; a killed replacement over the run beside it, never over
anything else) and what a second failure leaves (its checkpoint and ``failed.json``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transferkit.errors import RunError
from transferkit.runs.rundir import (
    CHECKPOINTS,
    PARTIAL_SUFFIX,
    RUN_ARGS,
    failure,
    foreign_entries,
    record_failure,
    resumable,
    say_interrupted,
)


def read_resume_args(run_dir: Path) -> dict[str, Any]:
    """The saved options of a killed run that ``fit --resume`` can continue (without
    ``out``); a RunError saying why not otherwise."""
    path, partial = run_dir / RUN_ARGS, run_dir.with_name(run_dir.name + PARTIAL_SUFFIX)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run directory (nothing to resume)")
    if not path.is_file():
        raise RunError(f"{run_dir}: nothing to resume ({RUN_ARGS} missing; was it written by "
                       f"'transferkit fit'?)")
    if (run_dir / "metrics.json").is_file() and not (run_dir / CHECKPOINTS).is_dir():
        hint = (f"; an unfinished replacement is in {partial}: transferkit fit --resume "
                f"{partial}" if (partial / RUN_ARGS).is_file() else "")
        raise RunError(f"{run_dir}: this run already finished; its report is "
                       f"{run_dir / 'report.html'}{hint}")
    failed = failure(run_dir)
    if failed is not None and not (run_dir / CHECKPOINTS).is_dir():
        raise RunError(f"{run_dir}: nothing to resume: the run failed before a training epoch "
                       f"was saved ({failed.get('error')}); start it again with "
                       f"'transferkit fit' (the same --out is fine)")
    try:
        args = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: unreadable ({exc})") from None
    if not isinstance(args, dict) or args.get("not_resumable") or any(
            isinstance(v, dict) and "<dataset>" in v
            for v in [*args.values(), *args.get("roles", {}).values()]):
        raise RunError(f"{run_dir}: this run was started from Python objects; call fit_run(..., "
                       f"resume=True) with the same data and options")
    args.pop("out", None)  # a run finishes where it is now, whatever its first --out
    return args


def replaced_by(run_dir: Path) -> Path:
    """Where a resumed run ends up: ``run_dir`` itself, or, for ``<out>.partial``, the run
    ``<out>`` beside it (refused when ``<out>`` holds anything but a run)."""
    if not run_dir.name.endswith(PARTIAL_SUFFIX) or run_dir.name == PARTIAL_SUFFIX:
        return run_dir
    final = run_dir.with_name(run_dir.name[:-len(PARTIAL_SUFFIX)])
    odd = foreign_entries(final) if final.exists() or final.is_symlink() else []
    if odd:
        raise RunError(f"{final}: the unfinished replacement {run_dir} would be swapped in "
                       f"over it, but it is not a transferkit run ({odd[0]}); move it away "
                       f"first")
    return final


def after_resume_failure(run_dir: Path, exc: BaseException) -> None:
    """A resumed run that failed again keeps its checkpoint and says why (Ctrl-C: how to
    continue)."""
    keep = resumable(run_dir)
    if keep and not isinstance(exc, KeyboardInterrupt):
        record_failure(run_dir, exc)
    if isinstance(exc, KeyboardInterrupt):
        say_interrupted(run_dir, keep)


#: command-line names of run options whose parameter name differs
_OPTION_NAMES = {"warmup_epochs": "--warmup", "train_bn": "--keep-bn-stats",
                 "cache": "--no-cache", "C": "--C"}


def check_same_options(run_dir: Path, saved: Mapping[str, Any],
                        given: Mapping[str, Any]) -> None:
    """Refuse options given with --resume that differ from the run's own, naming them."""
    def norm(key: str, v: Any) -> Any:
        if key in ("data", "val", "test") and isinstance(v, (str, Path)):
            return str(Path(v).expanduser().resolve())
        return str(v) if isinstance(v, Path) else v

    differ = []
    for key, value in given.items():
        if value is None:
            continue
        mine, theirs = norm(key, value), norm(key, saved.get(key))
        if mine != theirs and not (isinstance(mine, (int, float)) and
                                   isinstance(theirs, (int, float)) and
                                   float(mine) == float(theirs)):
            name = _OPTION_NAMES.get(key, "--" + key.replace("_", "-"))
            was = "not set" if saved.get(key) is None else repr(saved.get(key))
            differ.append(f"{name} {value!r} (the run: {was})")
    if differ:
        raise RunError(f"{run_dir}: --resume continues with the run's own options, and these "
                       f"differ from them: {'; '.join(differ)}; leave them out to resume, or "
                       f"start a new run with another --out to change them")
