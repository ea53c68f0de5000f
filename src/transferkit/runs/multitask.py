"""`transferkit multitask`: several tasks on one backbone, each beside a single-task model
trained with the same budget; metrics.json, a report, and one saved model with a head per
task (every sharing pattern)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transferkit._io import write_json_atomic
from transferkit.backbones import Backbone
from transferkit.backbones.modality import IMAGE_BACKBONE
from transferkit.data.dataset import Dataset, stratified_split
from transferkit.errors import DataError
from transferkit.multitask import MultiTaskFit, MultiTaskLearner
from transferkit.runs.data import one_dataset
from transferkit.runs.rundir import HasReport, preflight, run_directory


@dataclass
class MultiTaskResult(HasReport):
    """What was fitted and written."""

    fit: MultiTaskFit
    metrics: dict[str, Any]
    out: Path
    seconds: float


def parse_tasks(specs: list[str]) -> dict[str, str]:
    """``NAME=DATA`` pairs; a repeated name or a malformed pair is an error naming it."""
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ValueError(f"--task {spec!r}: expected NAME=DATA, e.g. --task fine=photos/")
        if name.strip() in out:
            raise ValueError(f"--task: the name {name.strip()!r} is used twice")
        out[name.strip()] = path.strip()
    return out


def multitask_run(tasks: Mapping[str, str | Path | Dataset], out: str | Path, *,
                  test: Mapping[str, str | Path | Dataset] | None = None,
                  test_fraction: float = 0.25, backbone: str | Backbone = IMAGE_BACKBONE,
                  sharing: str = "hard", weighting: str = "equal",
                  branch: Mapping[str, int] | None = None, freeze: int | str | None = None,
                  epochs: int = 10, lr: float | None = None, batch_size: int = 32,
                  finetune_epochs: int = 0, baselines: bool = True,
                  image_size: int | None = None, seed: int = 0, cache: Any = True,
                  bn: str = "auto", log: Callable[[str], None] | None = None,
                  overwrite: bool = False) -> MultiTaskResult:
    """Fit the tasks jointly; evaluate each on its test set beside its single-task model."""
    t0 = time.perf_counter()
    preflight(out, overwrite=overwrite, what="multi-task run",
              inputs=[*tasks.values(), *(test or {}).values()])
    data = {t: one_dataset(src, f"task {t!r}") for t, src in tasks.items()}
    unknown = sorted(set(test or {}) - set(data))
    if unknown:
        raise DataError(f"--test names task(s) {unknown} that are not among --task "
                        f"{sorted(data)}")
    train, tests = {}, {}
    for t, ds in data.items():
        if test and t in test:
            train[t], tests[t] = ds, one_dataset(test[t], f"task {t!r} (test)")
        else:
            train[t], tests[t] = stratified_split(ds, test_fraction, seed, what="test")
    learner = MultiTaskLearner(backbone, sharing=sharing, weighting=weighting, branch=branch,
                               freeze=freeze, epochs=epochs, lr=lr, batch_size=batch_size,
                               finetune_epochs=finetune_epochs, baselines=baselines,
                               image_size=image_size, seed=seed, cache=cache, bn=bn,
                               log=log)
    fit = learner.fit(train, tests)
    out = Path(out)
    with run_directory(out, overwrite=overwrite, what="multi-task run",
                       inputs=[*tasks.values(), *(test or {}).values()]) as where:
        info = {"strategy": "multitask", "sharing": sharing, "weighting": weighting,
                "epochs": epochs, "seed": seed, "bn": fit.bn}
        saved = _save(where, fit, list(train), sharing, fit.bn, info)
        metrics = _metrics(fit, train, tests, sharing, weighting, epochs, seed, saved,
                           time.perf_counter() - t0)
        metrics["bn"] = fit.bn
        metrics["bn_validation"] = fit.bn_scores  # --bn auto: each mode's mean val accuracy
        write_json_atomic(where / "metrics.json", metrics)
        _report(where, fit, tests, metrics)
    return MultiTaskResult(fit, metrics, out, time.perf_counter() - t0)


def _save(where: Path, fit: MultiTaskFit, tasks: list[str], sharing: str, bn: str,
          info: dict[str, Any]) -> str | None:
    """Write the deployable model in the run directory: hard sharing with shared or frozen
    BN statistics saves one trunk with a head per task (and ``model-<task>/`` for a task whose
    single-task model the guard kept); every other pattern saves one model with each task's
    column (multitask.deploy). Returns what was saved, in words."""
    from transferkit.model import TransferModel
    from transferkit.multitask.learner import task_backbone
    from transferkit.strategies.finetune_net import as_head

    if sharing != "hard" or bn == "task":  # one model: every task's column, the guard's pick
        from transferkit.multitask.deploy import save_deployable

        return save_deployable(where, fit, info)
    fit.net.to("cpu")  # saved from the CPU, whatever trained it
    for solo in fit.single_nets.values():
        solo.to("cpu")
    own = [t for t in tasks if fit.kept.get(t) == "single-task"]
    said = []
    for t in own:
        net = fit.single_nets[t]
        TransferModel(task_backbone(fit, t), {t: as_head(net.heads[t])},
                      {t: fit.class_names[t]}, info={**info, "task": t,
                                                     "kept": fit.kept.get(t, "joint")}
                      ).save(where / f"model-{t}")
        said.append(f"model-{t}/ ({fit.kept.get(t, 'joint')})")
    fit.backbone.model.to("cpu")  # hard sharing, shared or frozen statistics: one trunk
    TransferModel(fit.backbone, {t: as_head(fit.net.heads[t]) for t in tasks},
                  fit.class_names, info=info).save(where)
    said.insert(0, "config.json + model.safetensors: the joint model, one head per task")
    return "; ".join(said) + ("" if not own else "; deploy model-<task>/ for those tasks")


def _metrics(fit: MultiTaskFit, train: Mapping[str, Dataset], tests: Mapping[str, Dataset],
             sharing: str, weighting: str, epochs: int, seed: int, saved: str | None,
             seconds: float) -> dict[str, Any]:
    per = {}
    for t in train:
        row: dict[str, Any] = {"train": len(train[t]), "test": len(tests[t]),
                               "classes": len(fit.class_names[t]),
                               "joint_test_accuracy": fit.joint[t].test_accuracy,
                               "joint_val_accuracy": fit.joint[t].val_accuracy}
        if t in fit.single:
            row["single_task_test_accuracy"] = fit.single[t].test_accuracy
            row["single_task_val_accuracy"] = fit.single[t].val_accuracy
        if t in fit.finetuned:
            row["finetuned_test_accuracy"] = fit.finetuned[t].test_accuracy
        if t in fit.kept:  # the per-task guard: the model kept, picked on validation
            row["kept"] = fit.kept[t]
            row["kept_test_accuracy"] = fit.chosen(t).test_accuracy
        per[t] = row
    return {"sharing": sharing, "weighting": weighting, "epochs": epochs, "seed": seed,
            "tasks": per, "seconds": {k: round(v, 2) for k, v in fit.seconds.items()},
            "total_seconds": round(seconds, 2), "saved_model": saved, "history": fit.history}


def _report(where: Path, fit: MultiTaskFit, tests: Mapping[str, Dataset],
            metrics: dict[str, Any]) -> None:
    from transferkit.data.images import thumbnail_image
    from transferkit.evaluation import write_report
    from transferkit.evaluation.metrics import classification_metrics
    from transferkit.evaluation.plots import learning_curve_png
    from transferkit.runs.evaluate import curve_series

    def f(v: Any) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    rows = []
    for t, m in metrics["tasks"].items():
        j, s = m["joint_test_accuracy"], m.get("single_task_test_accuracy")
        gap = "n/a" if j is None or s is None else f"{100 * (j - s):+.1f}"
        rows.append([t, m["classes"], m["train"], f(j), f(s), gap,
                     f(m.get("finetuned_test_accuracy")), m.get("kept", "joint (no guard)")])
    table = {"title": "Each task: joint model beside its single-task model (same budget)",
             "columns": ["task", "classes", "train items", "joint test accuracy",
                         "single-task test accuracy", "sharing helped (points)",
                         "joint then fine-tuned on the task",
                         "kept (validation guard)"], "rows": rows,
             "note": f"sharing {metrics['sharing']}, weighting {metrics['weighting']}; the "
                     f"epoch of each model is picked on its tasks' held-out training data; "
                     f"the guard keeps a task's joint model only when it beats the "
                     f"single-task model on validation by more than one standard error of "
                     f"the paired difference (the saved model holds the joint heads)"}
    first = next(iter(tests))
    for i, (t, ds) in enumerate(tests.items()):
        pred = fit.joint[t].predictions
        if pred is None:
            continue
        names = fit.class_names[t]
        m = classification_metrics(ds.align_classes(names).labels, pred, None, names)
        figures = [{"title": "Learning curves (joint training)",
                    "png": learning_curve_png(curve_series(fit.history)), "note": "per epoch"}]
        target = where if t == first else where / f"task-{t}"
        write_report(target, title=f"Multi-task: task {t!r} ({metrics['sharing']} sharing)",
                     metrics=m, y_true=ds.align_classes(names).labels, y_pred=pred,
                     proba=None, class_names=names, items=ds.items, item_kind=ds.modality,
                     load_item=thumbnail_image if ds.modality == "image" else None,
                     info={"task": t, "other task reports": ", ".join(
                         f"task-{o}/report.html" for o in tests if o != first)
                         if i == 0 else "../report.html"},
                     tables=[table], figures=figures)
