"""Runs: fit a strategy on a dataset, evaluate on held-out data, write the run directory.

Run directories lose nothing (see :mod:`transferkit.rundir`): an existing run is refused
unless ``overwrite`` (then the new one is swapped in when finished), a failed run says why.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from transferkit._io import write_json_atomic
from transferkit.checks import check_modality
from transferkit.data.dataset import Dataset, Splits, make_splits
from transferkit.data.duplicates import duplicate_notes
from transferkit.errors import DataError
from transferkit.evaluate import (
    Evaluation,
    ProgressFn,
    as_data,
    evaluate_model,
    evaluations_table,
    single,
    summary_metrics,
)
from transferkit.model import TransferModel
from transferkit.resume import (
    after_resume_failure,
    check_same_options,
    read_resume_args,
    replaced_by,
)
from transferkit.rundir import RUN_ARGS, out_lock, run_directory, swap_in
from transferkit.strategies import make_strategy, strategy_spec

__all__ = ["RUN_ARGS", "Evaluation", "RunResult", "evaluate_model", "evaluate_run", "fit_run",
           "resume_run"]


@dataclass
class RunResult:
    """A fitted model, its named evaluations (``test``, and e.g. ``target-test``), the run
    directory and the strategy's validation score."""

    model: TransferModel
    evaluations: dict[str, Evaluation]  # empty on the non-zero ranks of a multi-process run
    run_dir: Path
    seconds: float
    splits: Splits
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


#: model.info entries that fit_run adds itself (not the strategy's settings)
_RUN_FACTS = ("strategy", "train_size", "classes", "train_source", "val_size", "test_source",
              "fit_seconds", "seed")


def fit_run(data: str | Path | Dataset | Splits, out: str | Path, *,
            backbone: str = "efficientnet_lite0", strategy: str = "probe",
            arch: str | None = None, val: str | Path | Dataset | None = None,
            test: str | Path | Dataset | None = None,
            roles: Mapping[str, str | Path | Dataset] | None = None, seed: int = 0,
            skip_bad: bool = False, test_fraction: float = 0.25, val_fraction: float = 0.0,
            cache: Any = True, title: str | None = None,
            tables: list[dict[str, Any]] | None = None, progress: ProgressFn | None = None,
            log: Callable[[str], None] | None = None, resume: bool = False,
            overwrite: bool = False, text_column: str | None = None,
            label_column: str = "label", guard: bool = False,
            **strategy_params: Any) -> RunResult:
    """Fit ``strategy`` on ``data``; evaluate on ``test`` (or a seeded stratified split).

    Writes ``out/config.json``, ``out/model.safetensors``, ``out/metrics.json`` and
    ``out/report.html``. An ``out`` that already holds a run is refused unless
    ``overwrite`` (the new run is then written to ``out.partial`` and swapped in when it has
    finished); a run that fails leaves ``failed.json`` saying why. ``roles`` gives further
    named datasets the strategy declares it takes (e.g. ``target``); every labelled role
    whose name ends in ``test`` is evaluated too, side by side with ``test`` (its own report
    in ``out/eval-<role>/``). Model selection uses ``val`` (or ``val_fraction`` of the
    training data, or cross-validation), never a test set. The strategy's options
    (``strategy_params``) are checked before anything is read or written: one it does not
    take is an error naming it. Gradient strategies checkpoint every epoch into
    ``out/checkpoints``; :func:`resume_run` continues a killed run from there. ``guard``:
    also train the no-transfer baseline (:mod:`transferkit.guard`) with the same budget on the
    same split (20% of the training data is held out for validation when none is given) and
    keep whichever scores better on validation, saying so.
    """
    args = {"data": data, "backbone": backbone, "strategy": strategy, "arch": arch, "val": val,
            "test": test, "roles": dict(roles or {}), "seed": seed, "skip_bad": skip_bad,
            "test_fraction": test_fraction, "val_fraction": val_fraction,
            "cache": cache if isinstance(cache, bool) else True, "text_column": text_column,
            "label_column": label_column, "guard": guard, **strategy_params}
    check_options(strategy, {"backbone": backbone, "arch": arch, "seed": seed},
                  strategy_params)
    out = Path(out)
    if resume:
        return _fit(Path(out), args, title=title, tables=tables, progress=progress, log=log,
                    resume=True)
    inputs = [data, val, test, *(roles or {}).values()]
    with run_directory(out, overwrite=overwrite, inputs=inputs) as where:
        _save_args(where, {**args, "out": out})
        result = _fit(where, args, title=title, tables=tables, progress=progress, log=log)
    return result.moved_to(where, out) if where != out else result


def check_options(strategy: str, context: Mapping[str, Any],
                  options: Mapping[str, Any]) -> None:
    """Check the strategy's options and the backbone's name (cheap: no data, no disk)."""
    make_strategy(strategy, context=context, **options)
    from transferkit.backbones import Backbone, resolve_backbone

    if not isinstance(context.get("backbone"), Backbone):
        resolve_backbone(context["backbone"], context.get("arch"))


def fit_into(where: str | Path, data: str | Path | Dataset | Splits, **kw: Any) -> RunResult:
    """``fit_run`` into a directory the caller has just made for it (no existence check):
    for commands that write several runs into one new directory (compare, the demo)."""
    title, tables = kw.pop("title", None), kw.pop("tables", None)
    progress, log = kw.pop("progress", None), kw.pop("log", None)
    kw.setdefault("backbone", "efficientnet_lite0")
    kw.setdefault("strategy", "probe")
    args = {"data": data, "roles": {}, **kw}
    return _fit(Path(where), args, title=title, tables=tables, progress=progress, log=log)


def _fit(where: Path, args: dict[str, Any], *, title: str | None,
         tables: list[dict[str, Any]] | None, progress: ProgressFn | None,
         log: Callable[[str], None] | None, resume: bool = False) -> RunResult:
    """Fit, save and evaluate into ``where`` (the run's directory while it is written)."""
    t0 = time.perf_counter()
    a = dict(args)
    data, strategy, seed = a.pop("data"), a.pop("strategy"), a.pop("seed", 0)
    backbone, arch = a.pop("backbone"), a.pop("arch", None)
    val, test, roles = a.pop("val", None), a.pop("test", None), a.pop("roles", {})
    skip_bad, cache = a.pop("skip_bad", False), a.pop("cache", True)
    test_fraction, val_fraction = a.pop("test_fraction", 0.25), a.pop("val_fraction", 0.0)
    text_column, label_column = a.pop("text_column", None), a.pop("label_column", "label")
    guard = a.pop("guard", False)
    if guard and val is None:  # both models need the same validation data to be compared
        val_fraction = max(val_fraction, 0.2)
    spec = strategy_spec(strategy)
    ckpt = where / "checkpoints"
    est = make_strategy(strategy, context={
        "backbone": backbone, "arch": arch, "seed": seed, "skip_bad": skip_bad, "cache": cache,
        "progress": progress, "log": log, "checkpoint_dir": ckpt, "resume": resume}, **a)
    read = {"text_column": text_column, "label_column": label_column, "skip_bad": skip_bad}
    labelled = {**read, "labelled": True}
    loaded = as_data(data, **labelled)
    for role, src in (roles or {}).items():
        if role in ("train", "val", "test"):
            raise ValueError(f"roles: {role!r} has its own argument (data / val / test)")
        how = True if role.endswith("test") else False if role in spec.unlabelled else None
        role_data = single(as_data(src, **read, labelled=how), role)
        loaded = (loaded if isinstance(loaded, Splits) else Splits(train=loaded)).with_role(
            role, role_data)
    missing = [r for r in spec.required
               if not (isinstance(loaded, Splits) and loaded.get(r) is not None)]
    if missing:
        raise DataError(f"strategy {strategy!r} needs {', '.join(map(repr, missing))} data "
                        f"(roles={{{missing[0]!r}: PATH}}, or the command's option for it)")
    splits = make_splits(loaded, val=single(as_data(val, **labelled), "val"),
                         test=single(as_data(test, **labelled), "test"),
                         test_fraction=test_fraction, val_fraction=val_fraction, seed=seed,
                         unseen_classes=spec.unseen_classes)
    for role, ds in splits.items():
        if ds.modality not in spec.modalities:
            raise DataError(f"{ds.source}: {ds.modality} data ({role}), but strategy "
                            f"{strategy!r} takes {' or '.join(spec.modalities)} data")
    check_modality(backbone, splits.train.modality, splits.train.source, arch=arch)
    notes = [n for _, ds in splits.items() for n in ds.notes] + duplicate_notes(splits)
    for note in dict.fromkeys(notes):
        if log is not None:
            log(f"note: {note}")
    extra_inputs = {kw: splits.get(role) for role, kw in spec.inputs.items()
                    if splits.get(role) is not None}
    est.fit(splits.train, X_val=splits.val, **extra_inputs)
    notes += list(getattr(est, "notes_", None) or [])  # what the strategy noticed
    guarded = None
    if guard:
        from transferkit.guard import run_guard

        guarded = run_guard(est, strategy, a, splits, seed=seed, cache=cache, log=log)
        if guarded is not None:
            notes.append(guarded.message())
            est = guarded.estimator
    model: TransferModel = est.model_
    from transferkit.train import dist_info

    val_score = getattr(est, "val_score_", None)
    if dist_info()[0] != 0:  # multi-process training: rank 0 alone saves and evaluates
        return RunResult(model=model, evaluations={}, run_dir=where,
                         seconds=time.perf_counter() - t0, splits=splits, val_score=val_score,
                         estimator=est)
    train_skipped = list(dict.fromkeys([*splits.train.skipped,
                                        *getattr(est, "skipped_", [])]))
    model.info.update({"train_size": len(splits.train), "classes": len(model.class_names),
                       "train_source": splits.train.source,
                       "val_size": None if splits.val is None else len(splits.val),
                       "test_source": None if splits.test is None else splits.test.source,
                       "fit_seconds": round(float(getattr(est, "fit_seconds_", 0.0)), 3)})
    model.save(where)
    noun = {"text": "texts", "audio": "clips"}.get(model.backbone.modality, "images")
    info: dict[str, Any] = {"strategy": strategy, "backbone": model.backbone.name,
                            "seed": seed, f"train {noun}": len(splits.train)}
    if model.backbone.modality == "text":
        info[f"training texts truncated to {getattr(model.backbone, 'max_length', '?')} "
             f"tokens"] = model.backbone.count_truncated(splits.train.items)
    info.update({k: v for k, v in model.info.items() if k not in _RUN_FACTS})
    for attr, key in (("recipe_", "recipe (why these settings)"),
                      ("holdout_note_", "validation data"), ("advice_", "advice")):
        if getattr(est, attr, None):
            info[key] = getattr(est, attr)
    if getattr(est, "best_epoch_", None) is not None:
        info["best epoch (on val)"] = est.best_epoch_
    info["validation accuracy (model selection)"] = val_score
    if notes:
        info["notes"] = list(dict.fromkeys(notes))
    info.update({"fit time (s)": round(float(getattr(est, "fit_seconds_", 0.0)), 2),
                 "skipped_files": train_skipped})
    extra: dict[str, Any] = {"split": "test", "train_skipped_files": train_skipped,
                             "val_score": val_score, "notes": list(dict.fromkeys(notes)),
                             "run": model.info}
    if hasattr(est, "history_"):
        extra["history"] = est.history_
    if getattr(est, "summary_", None):  # what the strategy itself reports (e.g. adaptation)
        extra["summary"] = est.summary_
    named = {"test": splits.test, **{r: d for r, d in splits.extra.items()
                                     if r.endswith("test") and d.labels is not None}}
    default_title = title or f"{strategy} on {Path(str(splits.train.source)).name}"
    evaluations: dict[str, Evaluation] = {}
    for role, ds in named.items():
        if ds.skipped and ds.skipped == splits.train.skipped:
            ds = replace(ds, skipped=[])  # the reader's skips are listed with train's
        evaluations[role] = evaluate_model(
            model, ds, None, title=default_title if role == "test" else
            f"{role}: {default_title}", skip_bad=skip_bad, cache=cache, info=info,
            progress=progress, extra={**extra, "split": role},
            history=getattr(est, "history_", None), read=read)
    for role, ev in evaluations.items():
        if role != "test":
            ev.write(where / f"eval-{role}")
    evaluations["test"].metrics["evaluations"] = {r: summary_metrics(ev.metrics)
                                                  for r, ev in evaluations.items()}
    side_by_side = [evaluations_table(evaluations)] if len(evaluations) > 1 else []
    own = list(getattr(est, "report_tables_", None) or [])
    if guarded is not None:
        own.append(_guard_table(guarded, splits))
    evaluations["test"].write(where, tables=[*side_by_side, *own, *(tables or [])])
    if ckpt.is_dir():
        shutil.rmtree(ckpt, ignore_errors=True)  # the finished model is saved; free the space
    return RunResult(model=model, evaluations=evaluations, run_dir=where,
                     seconds=time.perf_counter() - t0, splits=splits, val_score=val_score,
                     estimator=est)


def _save_args(where: Path, args: dict[str, Any]) -> None:
    def plain(v: Any) -> Any:
        if isinstance(v, Path):
            return str(v.resolve())
        if isinstance(v, (Dataset, Splits)):
            return {"<dataset>": v.train.source if isinstance(v, Splits) else v.source}
        return v

    def path(v: Any) -> Any:
        return str(Path(v).resolve()) if isinstance(v, str) else v

    args = {k: (path(v) if k in ("data", "val", "test", "out") else v)
            for k, v in args.items()}
    args["roles"] = {r: plain(path(v)) for r, v in args.get("roles", {}).items()}
    try:
        write_json_atomic(where / RUN_ARGS, {k: plain(v) for k, v in args.items()
                                             if k not in ("progress", "log")})
    except TypeError:  # options that are Python objects: resuming needs the Python call
        write_json_atomic(where / RUN_ARGS, {"not_resumable": True})


def resume_run(run_dir: str | Path, *, progress: ProgressFn | None = None,
               log: Callable[[str], None] | None = None,
               options: Mapping[str, Any] | None = None) -> RunResult:
    """Continue a killed ``fit_run`` from its checkpoints, with the options it was started with.

    ``run_dir`` is the run's directory (finished where it is now, even if it was moved), or
    ``<out>.partial`` for a replacement (``overwrite``) that was killed: it is swapped in over
    the run beside it, ``<out>``, once finished (only over a run, never other files).
    ``options``: options given again on the command line; one that differs from the run's
    own is an error naming it (a resumed run keeps its options).
    """
    run_dir = Path(run_dir)
    args = read_resume_args(run_dir)
    check_same_options(run_dir, args, options or {})
    final = replaced_by(run_dir)
    with out_lock(final):
        (run_dir / "failed.json").unlink(missing_ok=True)
        try:
            result = _fit(run_dir, args, title=None, tables=None, progress=progress, log=log,
                          resume=True)
        except BaseException as exc:
            after_resume_failure(run_dir, exc)
            raise
        if final != run_dir:  # a replacement: swap it in now
            swap_in(run_dir, final)
            return result.moved_to(run_dir, final)
    return result


def evaluate_run(run_dir: str | Path, data: str | Path | Dataset, out: str | Path | None = None,
                 *, skip_bad: bool = False, cache: Any = True,
                 progress: ProgressFn | None = None, text_column: str | None = None,
                 label_column: str = "label", overwrite: bool = False) -> Evaluation:
    """Evaluate a saved run on labelled data; writes into ``out`` (default RUN/eval-<name>),
    which must not hold an earlier evaluation unless ``overwrite``."""
    model = TransferModel.load(run_dir)
    name = Path(str(data.source if isinstance(data, Dataset) else data)).stem or "data"
    out_dir = Path(out) if out is not None else Path(run_dir) / f"eval-{name}"
    with run_directory(out_dir, overwrite=overwrite, what="evaluation",
                       inputs=[run_dir, data]) as where:
        ev = evaluate_model(model, data, where, title=f"Evaluation of {Path(run_dir).name} "
                            f"on {name}", skip_bad=skip_bad, cache=cache,
                            info={"run": str(run_dir), "backbone": model.backbone.name,
                                  **{k: v for k, v in model.info.items()
                                     if k in ("strategy", "head")}}, progress=progress,
                            read={"text_column": text_column, "label_column": label_column})
    if where != out_dir:
        ev.out_dir = out_dir
    return ev


def _guard_table(g: Any, splits: Splits) -> dict[str, Any]:
    """Transfer beside the no-transfer baseline: validation (the choice) and test accuracy."""
    def test_acc(e: Any) -> str:
        t = splits.test
        if t is None or t.labels is None:
            return "n/a"
        return f"{float((e.predict_proba(t).argmax(1) == t.labels).mean()):.4f}"

    def val(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    rows = [["transfer", val(g.transfer_val), test_acc(g.transfer_estimator),
             "kept" if g.kept == "transfer" else ""],
            [f"no transfer: {g.baseline}", val(g.baseline_val),
             test_acc(g.baseline_estimator), "kept" if g.kept == "baseline" else ""]]
    return {"title": "Negative-transfer guard (chosen on validation data)",
            "columns": ["model", "validation accuracy", "test accuracy", ""], "rows": rows,
            "note": g.message()}
