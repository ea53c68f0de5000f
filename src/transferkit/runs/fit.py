"""`transferkit fit`: fit a strategy on a dataset, evaluate on held-out data, write the run
directory.

Run directories lose nothing (see :mod:`transferkit.runs.rundir`): an existing run is refused
unless ``overwrite`` (then the new one is swapped in when finished), a failed run says why.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from transferkit.model import TransferModel
from transferkit.runs.evaluate import Evaluation, ProgressFn
from transferkit.runs.fit_report import write_evaluations
from transferkit.runs.request import FitRequest, load_splits, strategy_inputs
from transferkit.runs.resume import (
    after_resume_failure,
    check_same_options,
    read_resume_args,
    replaced_by,
)
from transferkit.runs.rundir import out_lock, run_directory, swap_in
from transferkit.strategies import make_strategy

__all__ = ["FitRequest", "RunResult", "fit_into", "fit_run", "resume_run", "run_fit"]

Log = Callable[[str], None]


@dataclass
class RunResult:
    """A fitted model, its named evaluations (``test``, and e.g. ``target-test``), the run
    directory and the strategy's validation score."""

    model: TransferModel
    evaluations: dict[str, Evaluation]  # empty on the non-zero ranks of a multi-process run
    run_dir: Path
    seconds: float
    splits: Any
    val_score: float | None = None
    estimator: Any = None

    @property
    def evaluation(self) -> Evaluation | None:
        """The evaluation on the test set (None on non-zero ranks of a multi-process run)."""
        return self.evaluations.get("test")

    def moved_to(self, where: Path, final: Path) -> RunResult:
        """The same result once its directory ``where`` has become ``final``."""
        for ev in self.evaluations.values():
            if ev.out_dir is not None:
                ev.out_dir = final / ev.out_dir.relative_to(where)
        return replace(self, run_dir=final)


def run_fit(req: FitRequest, out: str | Path, *, overwrite: bool = False,
            title: str | None = None, tables: list[dict[str, Any]] | None = None,
            progress: ProgressFn | None = None, log: Log | None = None) -> RunResult:
    """Fit ``req`` into the run directory ``out``: model, metrics, report.

    An ``out`` that already holds a run is refused unless ``overwrite`` (the new run is then
    written to ``out.partial`` and swapped in when it has finished); a run that fails leaves
    ``failed.json`` saying why. The request's options are checked before anything is read.
    """
    req.check()
    out = Path(out)
    inputs = [req.data, req.val, req.test, *req.roles.values()]
    with run_directory(out, overwrite=overwrite, inputs=inputs) as where:
        req.save(where, out)
        result = fit_into(where, req, title=title, tables=tables, progress=progress, log=log)
    return result.moved_to(where, out) if where != out else result


def fit_run(data: Any, out: str | Path, *, overwrite: bool = False, resume: bool = False,
            title: str | None = None, tables: list[dict[str, Any]] | None = None,
            progress: ProgressFn | None = None, log: Log | None = None,
            **args: Any) -> RunResult:
    """Fit a strategy on ``data``; evaluate on ``test`` (or a seeded stratified split).

    The Python face of :func:`run_fit`: ``args`` are :class:`FitRequest`'s fields
    (``strategy``, ``backbone``, ``val``, ``test``, ``roles``, ``seed``, ...) and the
    strategy's own options by name (``epochs=5``); one the strategy does not take is an
    error naming it. Every labelled role whose name ends in ``test`` is evaluated beside
    ``test``. Model selection uses ``val`` (or ``val_fraction`` of the training data, or
    cross-validation), never a test set. ``resume``: continue a killed run in ``out`` from its
    checkpoints. ``guard``: also train the no-transfer baseline (:mod:`.guard`) with the same
    budget and keep whichever scores better on validation, saying so.
    """
    req = FitRequest.from_args(data, **args)
    if resume:
        req.check()
        return fit_into(Path(out), req, title=title, tables=tables, progress=progress,
                        log=log, resume=True)
    return run_fit(req, out, overwrite=overwrite, title=title, tables=tables,
                   progress=progress, log=log)


def fit_into(where: str | Path, req: FitRequest, *, title: str | None = None,
             tables: list[dict[str, Any]] | None = None, progress: ProgressFn | None = None,
             log: Log | None = None, resume: bool = False) -> RunResult:
    """Fit, save and evaluate ``req`` into ``where``, a directory the caller owns (the run's
    while it is written; compare and the demo write several runs into one)."""
    t0, where = time.perf_counter(), Path(where)
    ckpt = where / "checkpoints"
    est = make_strategy(req.strategy, context={
        "backbone": req.backbone, "arch": req.arch, "seed": req.seed,
        "skip_bad": req.skip_bad, "cache": req.cache, "progress": progress, "log": log,
        "checkpoint_dir": ckpt, "resume": resume}, **req.options)
    splits, notes = load_splits(req, log)
    est.fit(splits.train, X_val=splits.val, **strategy_inputs(req.spec, splits))
    notes += list(getattr(est, "notes_", None) or [])  # what the strategy noticed
    guarded = None
    if req.guard:
        from transferkit.runs.guard import run_guard

        guarded = run_guard(est, req.strategy, req.options, splits, seed=req.seed,
                            cache=req.cache, log=log)
        if guarded is not None:
            notes.append(guarded.message())
            est = guarded.estimator
    from transferkit.train import dist_info

    evaluations: dict[str, Evaluation] = {}
    if dist_info()[0] == 0:  # multi-process training: rank 0 alone saves and evaluates
        evaluations = write_evaluations(where, req, est, splits, notes, guarded=guarded,
                                        title=title, tables=tables, progress=progress)
        if ckpt.is_dir():
            shutil.rmtree(ckpt, ignore_errors=True)  # the model is saved; free the space
    return RunResult(model=est.model_, evaluations=evaluations, run_dir=where,
                     seconds=time.perf_counter() - t0, splits=splits,
                     val_score=getattr(est, "val_score_", None), estimator=est)


def resume_run(run_dir: str | Path, *, progress: ProgressFn | None = None,
               log: Log | None = None, options: Mapping[str, Any] | None = None) -> RunResult:
    """Continue a killed fit run from its checkpoints, with the options it was started with.

    ``run_dir`` is the run's directory (finished where it is now, even if it was moved), or
    ``<out>.partial`` for a replacement (``overwrite``) that was killed: it is swapped in over
    the run beside it, ``<out>``, once finished (only over a run, never other files).
    ``options``: options given again on the command line; one that differs from the run's
    own is an error naming it (a resumed run keeps its options).
    """
    run_dir = Path(run_dir)
    args = read_resume_args(run_dir)
    check_same_options(run_dir, args, options or {})
    req = FitRequest.from_args(args.pop("data"), **args)
    final = replaced_by(run_dir)
    with out_lock(final):
        (run_dir / "failed.json").unlink(missing_ok=True)
        try:
            result = fit_into(run_dir, req, progress=progress, log=log, resume=True)
        except BaseException as exc:
            after_resume_failure(run_dir, exc)
            raise
        if final != run_dir:  # a replacement: swap it in now
            swap_in(run_dir, final)
            return result.moved_to(run_dir, final)
    return result
