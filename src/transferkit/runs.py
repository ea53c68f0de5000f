"""Runs: fit a strategy on a dataset, evaluate on held-out data, write the run directory."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from transferkit._io import write_json_atomic
from transferkit.data.dataset import Dataset, Splits, load_data, make_splits
from transferkit.data.images import load_image
from transferkit.errors import DataError, RunError
from transferkit.model import TransferModel
from transferkit.strategies import make_strategy

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

        keys = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
        series = {k: [row.get(k) for row in self.history] for k in keys
                  if any(row.get(k) is not None for row in self.history)}
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
    """A fitted model, its test evaluation and the run directory."""

    model: TransferModel
    evaluation: Evaluation | None  # None on the non-zero ranks of a multi-process run
    run_dir: Path
    seconds: float
    splits: Splits


RUN_ARGS = "run_args.json"


def fit_run(data: str | Path | Dataset | Splits, out: str | Path, *,
            backbone: str = "efficientnet_lite0", strategy: str = "probe",
            arch: str | None = None, val: str | Path | Dataset | None = None,
            test: str | Path | Dataset | None = None, head: str = "logreg", seed: int = 0,
            skip_bad: bool = False, test_fraction: float = 0.25, val_fraction: float = 0.0,
            cache: Any = True, title: str | None = None,
            tables: list[dict[str, Any]] | None = None, progress: ProgressFn | None = None,
            log: Callable[[str], None] | None = None, resume: bool = False,
            text_column: str | None = None, label_column: str = "label",
            **strategy_params: Any) -> RunResult:
    """Fit ``strategy`` on ``data``; evaluate on ``test`` (or a seeded stratified split).

    Writes ``out/config.json``, ``out/model.safetensors``, ``out/metrics.json`` and
    ``out/report.html``. Model selection uses ``val`` (or ``val_fraction`` of the training
    data, or cross-validation), never ``test``. Gradient strategies checkpoint every epoch
    into ``out/checkpoints``; ``resume=True`` (or :func:`resume_run`) continues from there.
    """
    t0 = time.perf_counter()
    out = Path(out)
    args = {"data": data, "out": out, "backbone": backbone, "strategy": strategy, "arch": arch,
            "val": val, "test": test, "head": head, "seed": seed, "skip_bad": skip_bad,
            "test_fraction": test_fraction, "val_fraction": val_fraction,
            "cache": cache if isinstance(cache, bool) else True, "text_column": text_column,
            "label_column": label_column, **strategy_params}
    if not resume:
        _save_args(out, args)
    read = {"text_column": text_column, "label_column": label_column, "skip_bad": skip_bad}
    splits = make_splits(_as_data(data, **read), val=_single(_as_data(val, **read), "val"),
                         test=_single(_as_data(test, **read), "test"),
                         test_fraction=test_fraction, val_fraction=val_fraction, seed=seed)
    params = dict(strategy_params)
    ckpt = out / "checkpoints"
    est = make_strategy(strategy, backbone=backbone, arch=arch, head=head, seed=seed,
                        skip_bad=skip_bad, cache=cache, progress=progress, log=log,
                        checkpoint_dir=ckpt, resume=resume, **params)
    est.fit(splits.train, X_val=splits.val)
    model: TransferModel = est.model_
    from transferkit.train import dist_info

    if dist_info()[0] != 0:  # multi-process training: rank 0 alone saves and evaluates
        return RunResult(model=model, evaluation=None, run_dir=out,
                         seconds=time.perf_counter() - t0, splits=splits)
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
    if strategy == "probe":
        info.update({"head": head, "C (chosen on val/CV)": getattr(est, "C_", None)})
    else:
        info.update({k: v for k, v in model.info.items() if k in (
            "freeze", "epochs", "head_epochs", "lr", "head_lr", "augment", "l2sp", "lwf",
            "dropout", "lora_r", "loss", "temperature", "head", "C", "prompts",
            "trainable_params")})
        if getattr(est, "best_epoch_", None) is not None:
            info["best epoch (on val)"] = est.best_epoch_
    info.update({"fit time (s)": round(float(getattr(est, "fit_seconds_", 0.0)), 2),
                 "skipped_files": train_skipped})
    extra: dict[str, Any] = {"split": "test", "train_skipped_files": train_skipped,
                             "run": model.info}
    if hasattr(est, "history_"):
        extra["history"] = est.history_
    test_ds = splits.test
    if test_ds is not None and test_ds.skipped and test_ds.skipped == splits.train.skipped:
        test_ds = replace(test_ds, skipped=[])  # the reader's skips are listed with train's
    ev = evaluate_model(model, test_ds, out, title=title or f"{strategy} on "
                        f"{Path(str(splits.train.source)).name}", skip_bad=skip_bad,
                        cache=cache, info=info, tables=tables, progress=progress, extra=extra,
                        history=getattr(est, "history_", None), read=read)
    if ckpt.is_dir():
        shutil.rmtree(ckpt, ignore_errors=True)  # the finished model is saved; free the space
    return RunResult(model=model, evaluation=ev, run_dir=out,
                     seconds=time.perf_counter() - t0, splits=splits)


def _save_args(out: Path, args: dict[str, Any]) -> None:
    def plain(v: Any) -> Any:
        if isinstance(v, Path):
            return str(v.resolve())
        if isinstance(v, (Dataset, Splits)):
            return {"<dataset>": v.train.source if isinstance(v, Splits) else v.source}
        return v

    args = {k: (str(Path(v).resolve()) if k in ("data", "val", "test", "out")
                and isinstance(v, str) else v) for k, v in args.items()}
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
                                        for v in args.values()):
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
