"""The demo: pretrained features vs raw pixels on the bundled Fashion-MNIST sample."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transferkit.data.dataset import from_folder, make_splits
from transferkit.data.samples import fashion_mnist_sample
from transferkit.runs import ProgressFn, RunResult, fit_run

DEMO_SEED = 0
DEMO_TEST_FRACTION = 0.5


def run_demo(out: str | Path = "demo-run", *, backbone: str = "efficientnet_lite0",
             cache: Any = True, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Fit a pixel baseline and a pretrained probe on one seeded split; report both.

    Returns ``{"rows": [...], "run_dir": Path, "report": Path}``; the probe's run directory
    holds the model, metrics.json and a report.html with the comparison table.
    """
    out = Path(out)
    splits = make_splits(from_folder(fashion_mnist_sample()), test_fraction=DEMO_TEST_FRACTION,
                         seed=DEMO_SEED)
    baseline = fit_run(splits, out / "baseline-pixels", backbone="pixels", seed=DEMO_SEED,
                       cache=cache, progress=progress,
                       title="No transfer: logistic regression on raw pixels")
    probe = fit_run(splits, out, backbone=backbone, seed=DEMO_SEED, cache=cache,
                    progress=progress,
                    title=f"Transfer: frozen {backbone} features + logistic regression "
                          f"on Fashion-MNIST (bundled sample)")
    rows = [_row("pixels + logreg (no transfer)", baseline),
            _row(f"{backbone} features + logreg (transfer)", probe)]
    table = {"title": "Same split, same head: does the pretrained backbone help?",
             "columns": ["model", "accuracy", "balanced accuracy", "macro F1", "fit time (s)"],
             "rows": [[r["model"], r["accuracy"], r["balanced_accuracy"], r["macro_f1"],
                       r["seconds"]] for r in rows]}
    probe.evaluation.write(out, tables=[table])
    return {"rows": rows, "run_dir": out, "report": probe.evaluation.report_path,
            "train_size": len(splits.train), "test_size": len(splits.test or [])}


def _row(name: str, r: RunResult) -> dict[str, Any]:
    m = r.evaluation.metrics
    return {"model": name, "accuracy": round(m["accuracy"], 4),
            "balanced_accuracy": round(m["balanced_accuracy"], 4),
            "macro_f1": round(m["macro_f1"], 4), "seconds": round(r.seconds, 1)}
