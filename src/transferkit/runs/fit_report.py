"""What a finished fit run writes: the model, and the evaluation of every labelled test role
(``test``, ``target-test``, ...) with the run's facts, side by side in one report."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from transferkit.data.dataset import Splits
from transferkit.runs.evaluate import (
    Evaluation,
    ProgressFn,
    evaluate_model,
    evaluations_table,
    summary_metrics,
)
from transferkit.runs.request import FitRequest

#: model.info entries a run adds itself (not the strategy's settings)
_RUN_FACTS = ("strategy", "train_size", "classes", "train_source", "val_size", "test_source",
              "fit_seconds", "seed")


def write_evaluations(where: Path, req: FitRequest, est: Any, splits: Splits,
                      notes: list[str], *, guarded: Any = None, title: str | None = None,
                      tables: list[dict[str, Any]] | None = None,
                      progress: ProgressFn | None = None) -> dict[str, Evaluation]:
    """Save ``est``'s model into ``where``; evaluate it on every labelled test role and
    write the reports (``test`` in ``where``, others in ``where/eval-<role>``)."""
    model = est.model_
    skipped = list(dict.fromkeys([*splits.train.skipped, *getattr(est, "skipped_", [])]))
    model.info.update({"train_size": len(splits.train), "classes": len(model.class_names),
                       "train_source": splits.train.source,
                       "val_size": None if splits.val is None else len(splits.val),
                       "test_source": None if splits.test is None else splits.test.source,
                       "fit_seconds": round(float(getattr(est, "fit_seconds_", 0.0)), 3)})
    model.save(where)
    notes = list(dict.fromkeys(notes))
    info = run_info(req, est, splits, notes, skipped)
    extra: dict[str, Any] = {"train_skipped_files": skipped, "notes": notes,
                             "val_score": getattr(est, "val_score_", None), "run": model.info}
    if hasattr(est, "history_"):
        extra["history"] = est.history_
    if getattr(est, "summary_", None):  # what the strategy itself reports (e.g. adaptation)
        extra["summary"] = est.summary_
    named = {"test": splits.test, **{r: d for r, d in splits.extra.items()
                                     if r.endswith("test") and d.labels is not None}}
    title = title or f"{req.strategy} on {Path(str(splits.train.source)).name}"
    read = {"text_column": req.text_column, "label_column": req.label_column,
            "skip_bad": req.skip_bad}
    evaluations: dict[str, Evaluation] = {}
    for role, ds in named.items():
        if ds.skipped and ds.skipped == splits.train.skipped:
            ds = replace(ds, skipped=[])  # the reader's skips are listed with train's
        evaluations[role] = evaluate_model(
            model, ds, None, title=title if role == "test" else f"{role}: {title}",
            skip_bad=req.skip_bad, cache=req.cache, info=info, progress=progress,
            extra={**extra, "split": role}, history=getattr(est, "history_", None),
            read=read)
    for role, ev in evaluations.items():
        if role != "test":
            ev.write(where / f"eval-{role}")
    evaluations["test"].metrics["evaluations"] = {r: summary_metrics(ev.metrics)
                                                  for r, ev in evaluations.items()}
    side_by_side = [evaluations_table(evaluations)] if len(evaluations) > 1 else []
    own = list(getattr(est, "report_tables_", None) or [])
    if guarded is not None:
        from transferkit.runs.guard import guard_table

        own.append(guard_table(guarded, splits))
    evaluations["test"].write(where, tables=[*side_by_side, *own, *(tables or [])])
    return evaluations


def run_info(req: FitRequest, est: Any, splits: Splits, notes: list[str],
             skipped: list[str]) -> dict[str, Any]:
    """The run's facts for the report: strategy, backbone, sizes, settings and why."""
    model = est.model_
    noun = {"text": "texts", "audio": "clips"}.get(model.backbone.modality, "images")
    info: dict[str, Any] = {"strategy": req.strategy, "backbone": model.backbone.name,
                            "seed": req.seed, f"train {noun}": len(splits.train)}
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
    info["validation accuracy (model selection)"] = getattr(est, "val_score_", None)
    if notes:
        info["notes"] = notes
    info.update({"fit time (s)": round(float(getattr(est, "fit_seconds_", 0.0)), 2),
                 "skipped_files": skipped})
    return info
