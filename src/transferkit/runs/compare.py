"""The seeds' small-data case study on any dataset: a ladder from scratch to fine-tuning.

Every rung is a ``finetune`` run through the one Trainer, on the same train/validation/test
split; validation picks each rung's best epoch and the best rung, the test set only scores.
The result is a comparison table, learning curves of every rung, the ROC curves of the worst
and the best rung, and one HTML report (plus each rung's own run directory).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transferkit._io import write_json_atomic
from transferkit.backbones.modality import IMAGE_BACKBONE
from transferkit.data.dataset import Dataset, Splits, make_splits
from transferkit.data.images import thumbnail_image
from transferkit.data.load import load_data
from transferkit.errors import DataError, TransferkitError
from transferkit.runs.data import one_dataset
from transferkit.runs.rundir import preflight, run_directory


@dataclass(frozen=True)
class Rung:
    """One model of the ladder: a description and its ``finetune`` parameters."""

    name: str
    description: str
    scratch: bool
    params: dict[str, Any]
    net: dict[str, Any] | None = None  # scratch rungs: ScratchCNN widths / fc (None: "cnn")


TOP = -2  # every stage but the top two
# Fine-tuning rungs: the `finetune` recipe's settings (strategies/recipes.py: lr 5e-4 after a
# head phase, pretrained BatchNorm statistics kept) with the rung's own freezing and
# augmentation, no fallback to the probe, and no early stopping: every rung, scratch or
# transferred, trains its full epochs and keeps its best validation epoch (the recipe's
# patience 5 on a 100-image validation set ended augmented rungs at epochs 2-3 on the
# Fashion-MNIST ladder: README, Benchmarks).
RUNGS: tuple[Rung, ...] = (
    Rung("scratch", "small CNN trained from random weights", True, {"freeze": 0}),
    Rung("scratch+dropout", "small CNN from scratch, dropout 0.5 before the head", True,
         {"freeze": 0, "dropout": 0.5}),
    Rung("scratch+dropout+augment", "small CNN from scratch, dropout 0.5, light augmentation",
         True, {"freeze": 0, "dropout": 0.5, "augment": "light"}),
    # seed 004's second model: one more conv block and one more dense layer, dropout 0.3
    Rung("scratch+deeper+dropout", "small CNN from scratch with one more conv block and a "
         "256-unit dense layer, dropout 0.3 (seed 004's regularised CNN)", True,
         {"freeze": 0, "dropout": 0.3}, {"widths": (32, 64, 128, 256, 256), "fc": 256}),
    Rung("scratch+deeper+dropout+augment", "the deeper CNN, dropout 0.3, light augmentation "
         "(seed 004's third model)", True, {"freeze": 0, "dropout": 0.3, "augment": "light"},
         {"widths": (32, 64, 128, 256, 256), "fc": 256}),
    Rung("frozen", "pretrained backbone as a frozen feature extractor, new linear head", False,
         {"freeze": "all"}),
    Rung("frozen+augment", "frozen pretrained backbone, light augmentation", False,
         {"freeze": "all", "augment": "light"}),
    Rung("finetune-top+augment", "top two stages fine-tuned (head trained first), light "
         "augmentation", False, {"freeze": TOP, "augment": "light", "two_stage": True}),
    Rung("finetune-all+augment", "every stage fine-tuned (head trained first), light "
         "augmentation", False, {"freeze": 0, "augment": "light", "two_stage": True}),
)
# seed 004's six models in its order, our nearest rungs (the seed's frozen rungs train a
# 512-unit dense head; ours a linear one)
SEED_LADDER = ("scratch", "scratch+deeper+dropout", "scratch+deeper+dropout+augment", "frozen",
               "frozen+augment", "finetune-top+augment")
# the seed's validation accuracies (cats vs dogs, 3,000 training images), from its text
SEED_VAL_ACCURACY = {"scratch": 0.72, "scratch+deeper+dropout": 0.78,
                     "scratch+deeper+dropout+augment": 0.82, "frozen": 0.88,
                     "frozen+augment": 0.90, "finetune-top+augment": 0.96}
RUNG_NAMES = tuple(r.name for r in RUNGS)
DEFAULT_RUNGS = tuple(n for n in RUNG_NAMES if "deeper" not in n)


@dataclass
class RungResult:
    """What one rung reached (or the error that stopped it)."""

    rung: Rung
    metrics: dict[str, Any] | None = None
    seconds: float = 0.0
    trainable_params: int | None = None
    best_epoch: int | None = None
    val_score: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    evaluation: Any = None
    error: str | None = None


@dataclass
class CompareResult:
    """All rungs, the best one (highest validation accuracy; None without validation data),
    and where the report is."""

    results: list[RungResult]
    best: RungResult | None
    out: Path
    seconds: float

    @property
    def report_path(self) -> Path:
        """The comparison report."""
        return self.out / "report.html"


def parse_rungs(rungs: str | Sequence[str] | None) -> list[Rung]:
    """Rungs by name (a comma-separated string or a list), in ladder order; None = the
    default seven; "seed" = seed 004's six models (SEED_LADDER)."""
    if rungs is None:
        return [r for r in RUNGS if r.name in DEFAULT_RUNGS]
    if rungs == "seed":
        return [r for r in RUNGS if r.name in SEED_LADDER]
    names = [r.strip() for r in (rungs.split(",") if isinstance(rungs, str) else rungs)]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in RUNG_NAMES]
    if unknown or not names:
        raise ValueError(f"--rungs: unknown rung(s) {', '.join(map(repr, unknown)) or '(none)'};"
                         f" choose from {', '.join(RUNG_NAMES)}")
    return [r for r in RUNGS if r.name in names]


def compare_run(data: str | Path | Dataset | Splits, out: str | Path, *,
                backbone: str = IMAGE_BACKBONE, rungs: str | Sequence[str] | None = None,
                test: str | Path | Dataset | None = None, val: str | Path | Dataset | None = None,
                test_fraction: float = 0.25, val_fraction: float = 0.1,
                epochs: int = 10, scratch_epochs: int = 30, head_epochs: int = 3,
                image_size: int | None = None, scratch_image_size: int = 64,
                batch_size: int = 32, seed: int = 0, cache: Any = True,
                log: Callable[[str], None] | None = None,
                progress: Callable[[int, int], None] | None = None,
                overwrite: bool = False) -> CompareResult:
    """Run the ladder's rungs on one split of ``data`` and write ``out/report.html``.

    Transfer rungs use ``backbone`` at ``image_size`` (default: its own); scratch rungs a
    small CNN at ``scratch_image_size``. ``epochs`` / ``scratch_epochs`` are per rung; the
    two-stage rungs first train the head alone for ``head_epochs``. An ``out`` holding an
    earlier comparison is refused unless ``overwrite`` (then the new one replaces it once
    finished).
    """
    chosen = parse_rungs(rungs)
    preflight(out, overwrite=overwrite, what="comparison", inputs=[data, test, val])
    out = Path(out)
    with run_directory(out, overwrite=overwrite, what="comparison",
                       inputs=[data, test, val]) as where:
        result = _ladder(where, chosen, data, backbone=backbone, test=test, val=val,
                         test_fraction=test_fraction, val_fraction=val_fraction,
                         epochs=epochs, scratch_epochs=scratch_epochs,
                         head_epochs=head_epochs, image_size=image_size,
                         scratch_image_size=scratch_image_size, batch_size=batch_size,
                         seed=seed, cache=cache, log=log, progress=progress)
    if where != out:
        for r in result.results:
            if r.evaluation is not None and r.evaluation.out_dir is not None:
                r.evaluation.out_dir = out / r.evaluation.out_dir.relative_to(where)
        result.out = out
    return result


def _ladder(where: Path, chosen: list[Rung], data: str | Path | Dataset | Splits, *,
            backbone: str, test: str | Path | Dataset | None,
            val: str | Path | Dataset | None, test_fraction: float, val_fraction: float,
            epochs: int, scratch_epochs: int, head_epochs: int, image_size: int | None,
            scratch_image_size: int, batch_size: int, seed: int, cache: Any,
            log: Callable[[str], None] | None, progress: Any) -> CompareResult:
    """Fit every chosen rung on one split, pick the best on validation, write the report."""
    from transferkit.runs.fit import FitRequest, fit_into

    t0 = time.perf_counter()
    loaded = data if isinstance(data, (Dataset, Splits)) else load_data(data)
    splits = make_splits(loaded, val=one_dataset(val, "--val", labelled=None),
                         test=one_dataset(test, "--test", labelled=None),
                         test_fraction=test_fraction, val_fraction=val_fraction, seed=seed)
    say = log or (lambda _msg: None)
    say(f"ladder of {len(chosen)} rungs: {len(splits.train)} train, "
        f"{0 if splits.val is None else len(splits.val)} validation, {len(splits.test)} test")
    results: list[RungResult] = []
    for i, rung in enumerate(chosen, 1):
        params = {"fallback": "none", "patience": 0, **rung.params}  # as named, all epochs
        if params.pop("two_stage", False):
            params["head_epochs"] = head_epochs
        size = scratch_image_size if rung.scratch else image_size
        net = _rung_backbone(rung, backbone, size, seed)
        say(f"[{i}/{len(chosen)}] {rung.name}: {rung.description}")
        res = RungResult(rung=rung)
        t1 = time.perf_counter()
        try:
            req = FitRequest(splits, strategy="finetune", backbone=net, seed=seed,
                             cache=cache, options={
                                 **params, "batch_size": batch_size, "image_size": size,
                                 "epochs": scratch_epochs if rung.scratch else epochs})
            run = fit_into(where / rung.name, req, log=log, progress=progress,
                           title=f"{rung.name}: {rung.description}")
        except DataError:
            raise
        except (TransferkitError, ValueError, RuntimeError, MemoryError) as exc:
            res.error = f"{type(exc).__name__}: {exc}"
            say(f"    {rung.name} failed: {res.error}")
        else:
            if run.evaluation is None:  # a non-zero rank of a multi-process run: rank 0 reports
                results.append(res)
                continue
            _record(res, run, say)
        res.seconds = time.perf_counter() - t1
        results.append(res)
    # the rung to recommend is chosen on validation data; the test set only reports
    best, worst = _best_and_worst(results, say)
    summary = {"backbone": backbone, "image_size": image_size,
               "scratch_image_size": scratch_image_size, "epochs": epochs,
               "scratch_epochs": scratch_epochs, "head_epochs": head_epochs, "seed": seed,
               "train": len(splits.train), "val": 0 if splits.val is None else len(splits.val),
               "test": len(splits.test), "best": None if best is None else best.rung.name,
               "rungs": [_row_json(r) for r in results]}
    write_json_atomic(where / "comparison.json", summary)
    done = [r for r in results if r.metrics is not None]
    if done:
        _write_report(where, results, best, worst, splits, summary)
    return CompareResult(results=results, best=best, out=where,
                         seconds=time.perf_counter() - t0)


def _record(res: RungResult, run: Any, say: Callable[[str], None]) -> None:
    """Copy a finished rung's evaluation, history and validation score into ``res``."""
    ev = run.evaluation
    res.metrics, res.evaluation = ev.metrics, ev
    res.history = list(ev.history or [])
    res.trainable_params = run.model.info.get("trainable_params")
    res.best_epoch = _best_epoch(res.history)
    res.val_score = run.val_score
    val_txt = "n/a" if run.val_score is None else f"{run.val_score:.4f}"
    say(f"    {res.rung.name}: validation accuracy {val_txt}, test accuracy "
        f"{ev.metrics['accuracy']:.4f}, macro F1 {ev.metrics['macro_f1']:.4f}")


def _best_and_worst(results: list[RungResult], say: Callable[[str], None]
                    ) -> tuple[RungResult | None, RungResult | None]:
    """The best and worst rungs on validation data (the test set only reports)."""
    scored = [r for r in results if r.metrics is not None and r.val_score is not None]
    best = max(scored, key=lambda r: r.val_score or 0.0) if scored else None
    worst = min(scored, key=lambda r: r.val_score or 0.0) if scored else None
    if best is None and any(r.metrics is not None for r in results):
        say("no validation data: no rung is chosen as best (give --val or --val-fraction)")
    return best, worst


def _rung_backbone(rung: Rung, backbone: str, size: int | None, seed: int) -> Any:
    """The network a rung trains: the pretrained backbone, "cnn", or its own ScratchCNN."""
    if rung.net is None:
        return "cnn" if rung.scratch else backbone
    from transferkit.backbones.cnn import ScratchCNN

    return ScratchCNN(image_size=size or 64, seed=seed, name="cnn", **rung.net)


def _best_epoch(history: list[dict[str, Any]]) -> int | None:
    rows = [(r["val_accuracy"], -i, i) for i, r in enumerate(history)
            if r.get("val_accuracy") is not None]
    return max(rows)[2] + 1 if rows else None


def _row_json(r: RungResult) -> dict[str, Any]:
    m = r.metrics or {}
    return {"rung": r.rung.name, "description": r.rung.description, "scratch": r.rung.scratch,
            "val_accuracy": r.val_score,
            "accuracy": m.get("accuracy"), "macro_precision": m.get("macro_precision"),
            "macro_recall": m.get("macro_recall"), "macro_f1": m.get("macro_f1"),
            "roc_auc": m.get("roc_auc_ovr_macro"), "seconds": round(r.seconds, 2),
            "trainable_params": r.trainable_params, "best_epoch": r.best_epoch,
            "error": r.error}


def _write_report(out: Path, results: list[RungResult], best: RungResult | None,
                  worst: RungResult | None, splits: Splits, summary: dict[str, Any]) -> None:
    from transferkit.evaluation import write_report
    from transferkit.evaluation.plots import learning_curve_png, roc_comparison_png
    from transferkit.runs.evaluate import curve_series

    columns = ["rung", "validation accuracy", "test accuracy", "macro precision",
               "macro recall", "macro F1", "ROC AUC", "time (s)", "trainable params",
               "best epoch", "what it is"]
    rows = []
    for r in results:
        j = _row_json(r)
        rows.append([j["rung"], j["val_accuracy"], j["accuracy"], j["macro_precision"],
                     j["macro_recall"], j["macro_f1"], j["roc_auc"], j["seconds"],
                     j["trainable_params"], j["best_epoch"], r.error or r.rung.description])
    figures: list[dict[str, Any]] = []
    curves = {r.rung.name: [h.get("val_accuracy") for h in r.history] for r in results
              if r.history}
    if curves:
        figures.append({"title": "Validation accuracy of every rung", "png":
                        learning_curve_png(curves), "note": "per epoch (two-stage rungs: the "
                        "head-only epochs come first)"})
    shown = best or next(r for r in results if r.metrics is not None)
    ev_best = shown.evaluation
    if best is not None:
        pair = {f"best: {best.rung.name}": (ev_best.y_true, ev_best.proba)}
        if worst is not None and worst is not best:
            pair[f"worst: {worst.rung.name}"] = (worst.evaluation.y_true,
                                                 worst.evaluation.proba)
        figures.append({"title": "ROC of the worst and the best rung (by validation "
                                 "accuracy)", "png": roc_comparison_png(pair, ev_best.class_names)})
    for r in results:
        if r.history:
            figures.append({"title": f"Learning curves: {r.rung.name}",
                            "png": learning_curve_png(curve_series(r.history)),
                            "note": r.rung.description})
    info = {"dataset": splits.train.source, "backbone": summary["backbone"],
            "image size": summary["image_size"] or "backbone default",
            "scratch image size": summary["scratch_image_size"],
            "epochs (transfer / scratch / head first)":
                f"{summary['epochs']} / {summary['scratch_epochs']} / {summary['head_epochs']}",
            "train / validation / test": f"{summary['train']} / {summary['val']} / "
                                         f"{summary['test']}",
            "best rung (validation accuracy)": best.rung.name if best else
            "none chosen: no validation data",
            "model selection": "best epoch and best rung on the validation set; the test set "
                               "only scores",
            "details below": shown.rung.name,
            "seed": summary["seed"]}
    title = (f"Transfer ladder: {len(results)} rungs (best on validation: {best.rung.name})"
             if best else f"Transfer ladder: {len(results)} rungs")
    write_report(out, title=title, metrics=ev_best.metrics, y_true=ev_best.y_true,
                 y_pred=ev_best.proba.argmax(axis=1), proba=ev_best.proba,
                 class_names=ev_best.class_names, items=ev_best.items,
                 item_kind=ev_best.modality,
                 load_item=thumbnail_image if ev_best.modality == "image" else None,
                 info=info,
                 tables=[{"title": "Comparison: validation (selection) and held-out test "
                                   "(report only)", "columns": columns, "rows": rows}],
                 figures=figures)
