"""The negative-transfer guard on a case built to fool transfer and on a normal one.

Negative case: 8x8 noise images whose class says whether the top-left quadrant is brighter
than the bottom-right one — a linear rule on the pixels that ImageNet features do not keep
(240 train, 80 validation, 80 test per seed). Normal case: Fashion-MNIST, 50 training and
10 validation images per class from the train split, 100 test images per class. Each: the
linear probe on EfficientNet-Lite0 (`fit --strategy probe --guard`) beside the no-transfer
baseline the guard trains with the same budget on the same split (raw pixels + the same
probe); which one the guard keeps is decided on validation only; test accuracy reported.

Run: .venv/bin/python benchmarks/guard_cases.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

from _common import FASHION_CLASSES, fashion_mnist, machine, write_results
from transferkit.data import Dataset, from_arrays
from transferkit.data.dataset import Splits
from transferkit.runs.guard import run_guard
from transferkit.strategies import ProbeClassifier


def noise_task(seed: int) -> Splits:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(400, 8, 8), dtype=np.uint8)
    y = (x[:, :4, :4].mean((1, 2)) > x[:, 4:, 4:].mean((1, 2))).astype(int)
    ds = from_arrays(list(x), [["darker", "brighter"][v] for v in y],
                     class_names=["darker", "brighter"], source="noise quadrants")
    idx = np.arange(400)
    return Splits(train=ds.subset(idx[:240]), val=ds.subset(idx[240:320]),
                  test=ds.subset(idx[320:]))


def _draw(split: str, per_class: int, seed: int, skip: int = 0) -> Dataset:
    x, y = fashion_mnist(split)
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.permutation(np.flatnonzero(y == c))[skip:skip + per_class]
                          for c in range(10)])
    return from_arrays([x[i] for i in idx], [FASHION_CLASSES[y[i]] for i in idx],
                       class_names=list(FASHION_CLASSES), source=f"fashion {split}")


def fashion_task(seed: int) -> Splits:
    return Splits(train=_draw("train", 50, seed), val=_draw("train", 10, seed, skip=50),
                  test=_draw("test", 100, 1000))


def _acc(est: Any, ds: Dataset) -> float:
    return float((est.predict_proba(ds).argmax(1) == ds.labels).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--name", default="guard_cases")
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    for case, make in (("noise quadrants (built to fool transfer)", noise_task),
                       ("Fashion-MNIST 50/class (normal)", fashion_task)):
        for seed in args.seeds:
            splits = make(seed)
            t0 = time.perf_counter()
            est = ProbeClassifier(seed=seed, progress=False).fit(splits.train,
                                                                 X_val=splits.val)
            g = run_guard(est, "probe", {}, splits, seed=seed, cache=True)
            assert g is not None
            rows.append({"case": case, "seed": seed, "baseline": g.baseline,
                         "transfer_val": g.transfer_val, "baseline_val": g.baseline_val,
                         "transfer_test": _acc(g.transfer_estimator, splits.test),
                         "baseline_test": _acc(g.baseline_estimator, splits.test),
                         "kept": g.kept, "seconds": time.perf_counter() - t0})
            print(rows[-1], flush=True)

    def ms(v: list[float]) -> str:
        return f"{statistics.mean(v):.3f} ± {statistics.pstdev(v):.3f}"

    table = []
    for case in dict.fromkeys(r["case"] for r in rows):
        rs = [r for r in rows if r["case"] == case]
        kept = [r["kept"] for r in rs]
        table.append([case, ms([r["transfer_val"] for r in rs]),
                      ms([r["baseline_val"] for r in rs]),
                      ms([r["transfer_test"] for r in rs]),
                      ms([r["baseline_test"] for r in rs]),
                      ", ".join(f"{k} {kept.count(k)}" for k in dict.fromkeys(kept)),
                      f"{statistics.mean(r['seconds'] for r in rs):.1f}"])
    notes = (f"Seeds {args.seeds}. transfer = linear probe on efficientnet_lite0 features; "
             f"baseline = the guard's no-transfer model (raw pixels, same probe, same split). "
             f"The guard keeps the better on validation; test accuracy never chooses. Time = "
             f"both fits + the guard. Total {(time.perf_counter() - t_start) / 60:.1f} min.")
    write_results(args.name, {"machine": machine(), "rows": rows}, table,
                  ["case", "transfer val", "baseline val", "transfer test", "baseline test",
                   "guard kept", "time (s)"], notes)


if __name__ == "__main__":
    main()
