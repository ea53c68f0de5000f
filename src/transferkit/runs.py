"""Runs: fit a strategy on a dataset, evaluate on held-out data, write the run directory."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from transferkit._io import write_json_atomic
from transferkit.data.dataset import Dataset, Splits, make_splits
from transferkit.data.images import load_image
from transferkit.data.load import load_data
from transferkit.errors import DataError, RunError
from transferkit.model import TransferModel
from transferkit.strategies import make_strategy, strategy_spec

ProgressFn = Callable[[int, int], None]


@dataclass
class Evaluation:
    """Predictions and metrics of a model on one dataset, and the report written for them."""

    metrics: dict[str, Any]
    y_true: np.ndarray
    proba: np.ndarray
    items: list[Any]
    class_names: list[str]
    modality: str = "image"
    title: str = "Evaluation"
    info: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    history: list[dict[str, Any]] | None = None
    out_dir: Path | None = None

    @property
    def report_path(self) -> Path | None:
        """The report.html written for this evaluation."""
        return None if self.out_dir is None else self.out_dir / "report.html"

    def figures(self) -> list[dict[str, Any]]:
        """The learning curves of the training history, when there is one."""
        if not self.history:
            return []
        from transferkit.evaluation.plots import learning_curve_png

        series = curve_series(self.history)
        phases = list(dict.fromkeys(str(r.get("phase", "")) for r in self.history))
        note = "per epoch" + (f"; phases: {' then '.join(phases)}" if len(phases) > 1 else "")
        return [{"title": "Learning curves", "png": learning_curve_png(series), "note": note}]

    def write(self, out_dir: str | Path, tables: list[dict[str, Any]] | None = None) -> Path:
        """Write metrics.json and report.html into ``out_dir``; returns the report path."""
        from transferkit.evaluation import write_report

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "metrics.json", self.metrics)
        write_report(out, title=self.title, metrics=self.metrics, y_true=self.y_true,
                     y_pred=self.proba.argmax(axis=1), proba=self.proba,
                     class_names=self.class_names, items=self.items, item_kind=self.modality,
                     load_item=load_image if self.modality == "image" else None,
                     info=dict(self.info), tables=tables, figures=self.figures())
        self.out_dir = out
        return out / "report.html"


def curve_series(history: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Every numeric value logged per epoch (losses, accuracies, named training scalars)."""
    skip = {"epoch", "seconds", "lr", "phase"}
    keys = dict.fromkeys(k for row in history for k in row if k not in skip)
    return {k: [row.get(k) for row in history] for k in keys
            if any(isinstance(row.get(k), (int, float)) and not isinstance(row.get(k), bool)
                   for row in history)}


def _as_data(x: str | Path | Dataset | Splits | None, **read: Any) -> Dataset | Splits | None:
    return (None if x is None else load_data(x, **read)
            if not isinstance(x, (Dataset, Splits)) else x)


def _single(x: Dataset | Splits | None, what: str) -> Dataset | None:
    if isinstance(x, Splits):
        raise DataError(f"--{what} must be one dataset, not a folder with train/val/test")
    return x


def evaluate_model(model: TransferModel, data: str | Path | Dataset, out_dir: str | Path | None,
                   *, title: str = "Evaluation", skip_bad: bool = False,
                   cache: Any = True, info: dict[str, Any] | None = None,
                   tables: list[dict[str, Any]] | None = None,
                   extra: dict[str, Any] | None = None,
                   progress: ProgressFn | None = None,
                   history: list[dict[str, Any]] | None = None,
                   read: dict[str, Any] | None = None) -> Evaluation:
    """Predict ``data`` (labels must be among the model's classes); write metrics + report.

    ``extra`` entries are added to metrics.json (e.g. the run's facts); ``read``: options
    for reading ``data`` from a path (text_column, label_column). Text runs report how many
    texts were cut to the backbone's maximum length.
    """
    from transferkit.evaluation import classification_metrics

    ds = (data if isinstance(data, Dataset) else
          _single(load_data(data, **{**(read or {}), "skip_bad": skip_bad}), "data"))
    if ds.labels is None:
        raise DataError(f"{ds.source}: evaluation needs labelled data")
    ds = ds.align_classes(model.class_names)
    feats = model.features(ds, cache=cache, skip_bad=skip_bad, progress=progress)
    info = dict(info or {})
    extra = dict(extra or {})
    if model.backbone.modality == "text":
        n_trunc = model.backbone.count_truncated(ds.items)
        info[f"texts truncated to {getattr(model.backbone, 'max_length', '?')} tokens"] = (
            f"{n_trunc} of {len(ds)}")
        extra["truncated_texts"] = n_trunc
    proba = model.proba_from_features(feats.features)
    y_true = ds.labels[feats.kept]
    metrics = classification_metrics(y_true, proba.argmax(axis=1), proba, model.class_names)
    metrics["skipped_files"] = list(ds.skipped) + list(feats.skipped)
    metrics.update(extra)
    run_info = {"dataset": ds.source, "samples": len(y_true), **info}
    skipped_all = list(dict.fromkeys([*run_info.pop("skipped_files", []), *ds.skipped,
                                      *feats.skipped]))
    if skipped_all:
        run_info["skipped_files"] = skipped_all
    ev = Evaluation(metrics=metrics, y_true=y_true, proba=proba,
                    items=[ds.items[i] for i in feats.kept], class_names=model.class_names,
                    modality=model.backbone.modality, title=title, info=run_info,
                    skipped=list(feats.skipped), history=history)
    if out_dir is not None:
        ev.write(out_dir, tables=tables)
    return ev


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


RUN_ARGS = "run_args.json"
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
            text_column: str | None = None, label_column: str = "label",
            **strategy_params: Any) -> RunResult:
    """Fit ``strategy`` on ``data``; evaluate on ``test`` (or a seeded stratified split).

    Writes ``out/config.json``, ``out/model.safetensors``, ``out/metrics.json`` and
    ``out/report.html``. ``roles`` gives further named datasets the strategy declares it takes
    (e.g. ``target``); every labelled role whose name ends in ``test`` is evaluated too,
    side by side with ``test`` (its own report in ``out/eval-<role>/``). Model selection uses
    ``val`` (or ``val_fraction`` of the training data, or cross-validation), never a test
    set. The strategy's options (``strategy_params``) are checked before any data is read:
    one it does not take is an error naming it. Gradient strategies checkpoint every epoch
    into ``out/checkpoints``; ``resume=True`` (or :func:`resume_run`) continues from there.
    """
    t0 = time.perf_counter()
    out = Path(out)
    spec = strategy_spec(strategy)
    ckpt = out / "checkpoints"
    est = make_strategy(strategy, context={
        "backbone": backbone, "arch": arch, "seed": seed, "skip_bad": skip_bad, "cache": cache,
        "progress": progress, "log": log, "checkpoint_dir": ckpt, "resume": resume},
        **strategy_params)
    args = {"data": data, "out": out, "backbone": backbone, "strategy": strategy, "arch": arch,
            "val": val, "test": test, "roles": dict(roles or {}), "seed": seed,
            "skip_bad": skip_bad, "test_fraction": test_fraction, "val_fraction": val_fraction,
            "cache": cache if isinstance(cache, bool) else True, "text_column": text_column,
            "label_column": label_column, **strategy_params}
    if not resume:
        _save_args(out, args)
    read = {"text_column": text_column, "label_column": label_column, "skip_bad": skip_bad}
    labelled = {**read, "labelled": True}
    loaded = _as_data(data, **labelled)
    for role, src in (roles or {}).items():
        if role in ("train", "val", "test"):
            raise ValueError(f"roles: {role!r} has its own argument (data / val / test)")
        role_data = _single(_as_data(src, **read, labelled=True if role.endswith("test")
                                     else None), role)
        loaded = (loaded if isinstance(loaded, Splits) else Splits(train=loaded)).with_role(
            role, role_data)
    missing = [r for r in spec.required
               if not (isinstance(loaded, Splits) and loaded.get(r) is not None)]
    if missing:
        raise DataError(f"strategy {strategy!r} needs {', '.join(map(repr, missing))} data "
                        f"(roles={{{missing[0]!r}: PATH}}, or the command's option for it)")
    splits = make_splits(loaded, val=_single(_as_data(val, **labelled), "val"),
                         test=_single(_as_data(test, **labelled), "test"),
                         test_fraction=test_fraction, val_fraction=val_fraction, seed=seed,
                         unseen_classes=spec.unseen_classes)
    for role, ds in splits.items():
        if ds.modality not in spec.modalities:
            raise DataError(f"{ds.source}: {ds.modality} data ({role}), but strategy "
                            f"{strategy!r} takes {' or '.join(spec.modalities)} data")
    extra_inputs = {kw: splits.get(role) for role, kw in spec.inputs.items()
                    if splits.get(role) is not None}
    est.fit(splits.train, X_val=splits.val, **extra_inputs)
    model: TransferModel = est.model_
    from transferkit.train import dist_info

    val_score = getattr(est, "val_score_", None)
    if dist_info()[0] != 0:  # multi-process training: rank 0 alone saves and evaluates
        return RunResult(model=model, evaluations={}, run_dir=out,
                         seconds=time.perf_counter() - t0, splits=splits, val_score=val_score,
                         estimator=est)
    train_skipped = list(dict.fromkeys([*splits.train.skipped,
                                        *getattr(est, "skipped_", [])]))
    model.info.update({"train_size": len(splits.train), "classes": len(model.class_names),
                       "train_source": splits.train.source,
                       "val_size": None if splits.val is None else len(splits.val),
                       "test_source": None if splits.test is None else splits.test.source,
                       "fit_seconds": round(float(getattr(est, "fit_seconds_", 0.0)), 3)})
    model.save(out)
    noun = "texts" if model.backbone.modality == "text" else "images"
    info: dict[str, Any] = {"strategy": strategy, "backbone": model.backbone.name,
                            "seed": seed, f"train {noun}": len(splits.train)}
    if model.backbone.modality == "text":
        info[f"training texts truncated to {getattr(model.backbone, 'max_length', '?')} "
             f"tokens"] = model.backbone.count_truncated(splits.train.items)
    info.update({k: v for k, v in model.info.items() if k not in _RUN_FACTS})
    if getattr(est, "best_epoch_", None) is not None:
        info["best epoch (on val)"] = est.best_epoch_
    info["validation accuracy (model selection)"] = val_score
    info.update({"fit time (s)": round(float(getattr(est, "fit_seconds_", 0.0)), 2),
                 "skipped_files": train_skipped})
    extra: dict[str, Any] = {"split": "test", "train_skipped_files": train_skipped,
                             "val_score": val_score, "run": model.info}
    if hasattr(est, "history_"):
        extra["history"] = est.history_
    named = {"test": splits.test, **{r: d for r, d in splits.extra.items()
                                     if r.endswith("test") and d.labels is not None}}
    evaluations: dict[str, Evaluation] = {}
    for role, ds in named.items():
        if ds.skipped and ds.skipped == splits.train.skipped:
            ds = replace(ds, skipped=[])  # the reader's skips are listed with train's
        evaluations[role] = evaluate_model(
            model, ds, None, title=f"{role}: " + (title or f"{strategy} on "
                                                  f"{Path(str(splits.train.source)).name}"),
            skip_bad=skip_bad, cache=cache, info=info, progress=progress,
            extra={**extra, "split": role}, history=getattr(est, "history_", None), read=read)
    evaluations["test"].title = title or (f"{strategy} on "
                                          f"{Path(str(splits.train.source)).name}")
    side_by_side = evaluations_table(evaluations)
    for role, ev in evaluations.items():
        if role != "test":
            ev.write(out / f"eval-{role}")
    summary = {r: summary_metrics(ev.metrics) for r, ev in evaluations.items()}
    evaluations["test"].metrics["evaluations"] = summary
    evaluations["test"].write(out, tables=[*([side_by_side] if len(evaluations) > 1 else []),
                                           *(tables or [])])
    if ckpt.is_dir():
        shutil.rmtree(ckpt, ignore_errors=True)  # the finished model is saved; free the space
    return RunResult(model=model, evaluations=evaluations, run_dir=out,
                     seconds=time.perf_counter() - t0, splits=splits, val_score=val_score,
                     estimator=est)


def summary_metrics(m: Mapping[str, Any]) -> dict[str, Any]:
    """The headline numbers of one evaluation's metrics."""
    return {k: m.get(k) for k in ("accuracy", "balanced_accuracy", "macro_f1",
                                  "roc_auc_ovr_macro", "log_loss")} | {
        "samples": int(sum(sum(row) for row in m.get("confusion_matrix", [])))}


def evaluations_table(evaluations: Mapping[str, Evaluation]) -> dict[str, Any]:
    """A report table: one row per named evaluation, side by side."""
    rows = []
    for role, ev in evaluations.items():
        s = summary_metrics(ev.metrics)
        rows.append([role, s["samples"], s["accuracy"], s["balanced_accuracy"], s["macro_f1"],
                     s["roc_auc_ovr_macro"], str(ev.info.get("dataset", ""))])
    return {"title": "Evaluations side by side", "columns": [
        "evaluation", "items", "accuracy", "balanced accuracy", "macro F1", "ROC AUC",
        "data"], "rows": rows}


def _save_args(out: Path, args: dict[str, Any]) -> None:
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
        write_json_atomic(out / RUN_ARGS, {k: plain(v) for k, v in args.items()
                                           if k not in ("progress", "log")})
    except TypeError:  # options that are Python objects: resuming needs the Python call
        write_json_atomic(out / RUN_ARGS, {"not_resumable": True})


def resume_run(run_dir: str | Path, *, progress: ProgressFn | None = None,
               log: Callable[[str], None] | None = None) -> RunResult:
    """Continue a killed ``fit_run`` from its checkpoints, with the options it was started with."""
    run_dir = Path(run_dir)
    path = run_dir / RUN_ARGS
    if not path.is_file():
        raise RunError(f"{run_dir}: nothing to resume ({RUN_ARGS} missing; was it written by "
                       f"'transferkit fit'?)")
    args = json.loads(path.read_text(encoding="utf-8"))
    if (run_dir / "metrics.json").is_file() and not (run_dir / "checkpoints").is_dir():
        raise RunError(f"{run_dir}: this run already finished; its report is "
                       f"{run_dir / 'report.html'}")
    if args.get("not_resumable") or any(isinstance(v, dict) and "<dataset>" in v
                                        for v in [*args.values(),
                                                  *args.get("roles", {}).values()]):
        raise RunError(f"{run_dir}: this run was started from Python objects; call fit_run(..., "
                       f"resume=True) with the same data and options")
    data, out = args.pop("data"), args.pop("out")
    return fit_run(data, out, progress=progress, log=log, resume=True, **args)


def evaluate_run(run_dir: str | Path, data: str | Path | Dataset, out: str | Path | None = None,
                 *, skip_bad: bool = False, cache: Any = True,
                 progress: ProgressFn | None = None, text_column: str | None = None,
                 label_column: str = "label") -> Evaluation:
    """Evaluate a saved run on labelled data; writes into ``out`` (default RUN/eval-<name>)."""
    model = TransferModel.load(run_dir)
    name = Path(str(data.source if isinstance(data, Dataset) else data)).stem or "data"
    out_dir = Path(out) if out is not None else Path(run_dir) / f"eval-{name}"
    return evaluate_model(model, data, out_dir, title=f"Evaluation of {Path(run_dir).name} "
                          f"on {name}", skip_bad=skip_bad, cache=cache,
                          info={"run": str(run_dir), "backbone": model.backbone.name,
                                **{k: v for k, v in model.info.items()
                                   if k in ("strategy", "head")}}, progress=progress,
                          read={"text_column": text_column, "label_column": label_column})
