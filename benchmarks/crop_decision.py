"""Should pretrained image backbones keep timm's evaluation crop (crop_pct 0.875)? Decided on
validation data across the image tasks, the probe and fine-tuning alike.

timm's eval transform resizes the shorter side to size / crop_pct and cuts the centre: for an
ImageNet photograph that trims background, for a tightly framed small image (a Fashion-MNIST
garment, a digit, a glyph) it cuts the object's border. Each task is run with crop_pct 0.875
(timm's default for EfficientNet-Lite) and 1.0 (the whole image, resized):

- fmnist50 / digits / faces: the tasks of ``finetune_defaults.py`` (seeds 0-2); validation =
  the probe's cross-validated accuracy at its chosen C on the training draw, and for the
  default fine-tuning recipe the held-out 20% of the draw that picks its epoch;
- clipart (openclipart-png, 10 categories, seed 0) and icons (theme-group split 0, 176
  names): validation = their validation split (the clip-art held-out images; the Paper
  theme), at the case studies' 128 px.

The decision reads validation figures only; test accuracy is shown beside them and chooses
nothing. Run: .venv/bin/python benchmarks/crop_decision.py [--seeds 0 1 2] [--ft-seeds 0]
[--tasks ...]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import machine, write_results
from finetune_defaults import load_task
from transferkit.backbones.registry import load_backbone
from transferkit.data import Dataset
from transferkit.data.load import load_data

CROPS = (0.875, 1.0)
TASKS = ("fmnist50", "digits", "faces", "clipart", "icons")


def backbone(crop: float, size: int | None = None) -> Any:
    """EfficientNet-Lite0 with ``crop_pct`` = ``crop`` (at ``size`` px when given)."""
    bb = load_backbone("efficientnet_lite0")
    if size is not None:
        bb = bb.with_image_size(size)
    return bb.with_crop_pct(crop)


def _acc(est: Any, ds: Dataset) -> float:
    return float((est.predict_proba(ds).argmax(1) == ds.labels).mean())


def probe_row(train: Dataset, val: Dataset | None, test: Dataset, crop: float,
              size: int | None, cache: str) -> dict[str, Any]:
    from transferkit.strategies import ProbeClassifier

    t0 = time.perf_counter()
    est = ProbeClassifier(backbone=backbone(crop, size), cache=cache, seed=0).fit(train)
    val_acc = est.val_score_ if val is None else _acc(est, val)
    return {"method": "probe", "val": val_acc, "val_kind": "cv" if val is None else "split",
            "test": _acc(est, test), "seconds": time.perf_counter() - t0}


def finetune_row(train: Dataset, test: Dataset, crop: float, seed: int,
                 cache: str) -> dict[str, Any]:
    from transferkit.strategies import FineTuneClassifier

    t0 = time.perf_counter()
    est = FineTuneClassifier(backbone=backbone(crop), cache=cache, seed=seed,
                             progress=False).fit(train)
    return {"method": "finetune", "val": est.val_score_, "val_kind": "holdout",
            "test": _acc(est, test), "kept": est.model_.info.get("fallback", "fine-tuned"),
            "seconds": time.perf_counter() - t0}


def case_tasks(root: Path, tasks: list[str]) -> dict[str, Any]:
    """The case-study tasks among ``tasks`` (train, val, test), built from the installed
    packages."""
    from transferkit.data.collections import clipart_task
    from transferkit.data.icons import icon_task

    if "clipart" in tasks:
        clipart_task(root / "clipart", seed=0, size=128)
    if "icons" in tasks:
        icon_task(root / "icons")
    return {name: load_data(root / name) for name in ("clipart", "icons") if name in tasks}


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    root, cache = Path(tempfile.mkdtemp()), tempfile.mkdtemp()
    rows: list[dict[str, Any]] = []

    def add(task: str, seed: int, crop: float, row: dict[str, Any]) -> None:
        rows.append({"task": task, "seed": seed, "crop_pct": crop, **row})
        print(rows[-1], flush=True)

    for task in [t for t in ("fmnist50", "digits", "faces") if t in args.tasks]:
        for seed in args.seeds:
            train, test = load_task(task, seed, root)
            for crop in CROPS:
                add(task, seed, crop, probe_row(train, None, test, crop, None, cache))
                if seed in args.ft_seeds:
                    add(task, seed, crop, finetune_row(train, test, crop, seed, cache))
    for task, splits in case_tasks(root, args.tasks).items():
        for crop in CROPS:
            add(task, 0, crop, probe_row(splits.train, splits.val, splits.test, crop, 128,
                                         cache))
    return rows


def table(rows: list[dict[str, Any]]) -> tuple[list[list[Any]], dict[str, Any]]:
    """One line per task and method: validation and test by crop, and the validation gain."""
    out, gains = [], []
    keys = dict.fromkeys((r["task"], r["method"]) for r in rows)
    for task, method in keys:
        by = {c: [r for r in rows if r["task"] == task and r["method"] == method
                  and r["crop_pct"] == c] for c in CROPS}
        val = {c: statistics.mean(r["val"] for r in by[c]) for c in CROPS}
        test = {c: statistics.mean(r["test"] for r in by[c]) for c in CROPS}
        gain = 100 * (val[1.0] - val[0.875])
        gains.append(gain)
        out.append([task, method, len(by[1.0]), by[1.0][0]["val_kind"],
                    f"{val[0.875]:.3f}", f"{val[1.0]:.3f}", f"{gain:+.1f}",
                    f"{test[0.875]:.3f}", f"{test[1.0]:.3f}",
                    f"{100 * (test[1.0] - test[0.875]):+.1f}"])
    wins = sum(g > 0 for g in gains)
    return out, {"validation_gains": gains, "wins": wins, "losses": sum(g < 0 for g in gains),
                 "median_gain": statistics.median(gains)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--ft-seeds", type=int, nargs="*", default=[0])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS))
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = run(args)
    lines, verdict = table(rows)
    notes = (f"Seeds {args.seeds} (fine-tuning: {args.ft_seeds}). EfficientNet-Lite0; "
             f"crop 0.875 = timm's evaluation transform (resize to size/0.875, centre crop), "
             f"1.0 = the whole image resized. val: cv = the probe's cross-validated accuracy "
             f"on the training draw, holdout = fine-tuning's held-out 20%, split = the task's "
             f"validation split. Validation gain of crop 1.0, median over task rows "
             f"{verdict['median_gain']:+.1f} points ({verdict['wins']} rows gain, "
             f"{verdict['losses']} lose); test figures choose nothing. Total "
             f"{(time.perf_counter() - t0) / 60:.1f} min, 2 CPU threads.")
    write_results("crop_decision", {"machine": machine(), "rows": rows, "verdict": verdict,
                                    "settings": vars(args)},
                  lines, ["task", "method", "seeds", "val", "val crop 0.875", "val crop 1.0",
                          "val gain (pts)", "test crop 0.875", "test crop 1.0",
                          "test gain (pts)"], notes)
    print(np.round(verdict["validation_gains"], 1), verdict)


if __name__ == "__main__":
    main()
