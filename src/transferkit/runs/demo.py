"""The demo: pretrained features vs raw pixels on the bundled Fashion-MNIST sample."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from transferkit.backbones.modality import IMAGE_BACKBONE
from transferkit.data.dataset import from_folder, make_splits
from transferkit.data.samples import fashion_mnist_sample
from transferkit.runs.evaluate import ProgressFn
from transferkit.runs.fit import FitRequest, RunResult, fit_into
from transferkit.runs.rundir import run_directory

DEMO_SEED = 0
DEMO_TEST_FRACTION = 0.5


def run_demo(out: str | Path = "demo-run", *, backbone: str = IMAGE_BACKBONE,
             cache: Any = True, progress: ProgressFn | None = None,
             log: Callable[[str], None] | None = None,
             overwrite: bool = False) -> dict[str, Any]:
    """Fit a pixel baseline and a pretrained probe on one seeded split; report both.

    Returns ``{"rows": [...], "run_dir": Path, "report": Path}``; the probe's run directory
    holds the model, metrics.json and a report.html with the comparison table (the
    baseline's run is in its ``baseline-pixels/``). An ``out`` holding an earlier demo is
    refused unless ``overwrite``.
    """
    out = Path(out)
    splits = make_splits(from_folder(fashion_mnist_sample()), test_fraction=DEMO_TEST_FRACTION,
                         seed=DEMO_SEED)
    say = log or (lambda _line: None)
    with run_directory(out, overwrite=overwrite, what="demo") as where:
        say("1/2 no transfer: logistic regression on raw pixels (C chosen by 3-fold CV)")
        baseline = fit_into(where / "baseline-pixels", FitRequest(
                                splits, backbone="pixels", seed=DEMO_SEED, cache=cache),
                            progress=progress, log=log,
                            title="No transfer: logistic regression on raw pixels")
        say(f"2/2 transfer: frozen {backbone} features + logistic regression")
        probe = fit_into(where, FitRequest(splits, backbone=backbone, seed=DEMO_SEED,
                                           cache=cache), progress=progress, log=log,
                         title=f"Transfer: frozen {backbone} features + logistic regression "
                               f"on Fashion-MNIST (bundled sample)")
        rows = [_row("pixels + logreg (no transfer)", baseline),
                _row(f"{backbone} features + logreg (transfer)", probe)]
        table = {"title": "Same split, same head: does the pretrained backbone help?",
                 "columns": ["model", "accuracy", "balanced accuracy", "macro F1",
                             "fit time (s)"],
                 "rows": [[r["model"], r["accuracy"], r["balanced_accuracy"], r["macro_f1"],
                           r["seconds"]] for r in rows]}
        probe.evaluation.write(where, tables=[table])
    return {"rows": rows, "run_dir": out, "report": out / "report.html",
            "train_size": len(splits.train), "test_size": len(splits.test or [])}


def _row(name: str, r: RunResult) -> dict[str, Any]:
    m = r.evaluation.metrics
    return {"model": name, "accuracy": round(m["accuracy"], 4),
            "balanced_accuracy": round(m["balanced_accuracy"], 4),
            "macro_f1": round(m["macro_f1"], 4), "seconds": round(r.seconds, 1)}
