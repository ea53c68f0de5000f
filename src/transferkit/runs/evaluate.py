"""Evaluating a model on labelled data: predictions, metrics, the report, and named
evaluations side by side."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from transferkit._io import make_dir, write_json_atomic
from transferkit.backbones.modality import check_modality
from transferkit.data.dataset import Dataset
from transferkit.data.images import thumbnail_image
from transferkit.data.load import load_data
from transferkit.errors import DataError
from transferkit.model import TransferModel
from transferkit.runs.data import single
from transferkit.runs.rundir import run_directory

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
        kept = kept_epoch(self.history)
        if kept is not None:
            note += (f"; the weights of epoch {kept} (best on the validation data) were kept")
        return [{"title": "Learning curves", "png": learning_curve_png(series, kept),
                 "note": note}]

    def write(self, out_dir: str | Path, tables: list[dict[str, Any]] | None = None) -> Path:
        """Write metrics.json and report.html into ``out_dir``; returns the report path."""
        from transferkit.evaluation import write_report

        out = make_dir(out_dir)
        write_json_atomic(out / "metrics.json", self.metrics)
        write_report(out, title=self.title, metrics=self.metrics, y_true=self.y_true,
                     y_pred=self.proba.argmax(axis=1), proba=self.proba,
                     class_names=self.class_names, items=self.items, item_kind=self.modality,
                     load_item=thumbnail_image if self.modality == "image" else None,
                     info=dict(self.info), tables=tables, figures=self.figures())
        self.out_dir = out
        return out / "report.html"


def kept_epoch(history: list[dict[str, Any]]) -> int | None:
    """The 1-based position of the epoch whose weights were kept (a row marked ``kept``)."""
    return next((i + 1 for i, row in enumerate(history) if row.get("kept")), None)


def curve_series(history: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Every numeric value logged per epoch (losses, accuracies, named training scalars)."""
    skip = {"epoch", "seconds", "lr", "phase", "kept"}
    keys = dict.fromkeys(k for row in history for k in row if k not in skip)
    return {k: [row.get(k) for row in history] for k in keys
            if any(isinstance(row.get(k), (int, float)) and not isinstance(row.get(k), bool)
                   for row in history)}


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
          single(load_data(data, **{**(read or {}), "skip_bad": skip_bad}), "data"))
    check_modality(model.backbone, ds.modality, ds.source, option=None)
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
