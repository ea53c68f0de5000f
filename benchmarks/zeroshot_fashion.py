"""Zero-shot on Fashion-MNIST with EfficientNet-Lite0 features and the bundled side
information (one written sentence per class; a hand-made binary attribute table).

Split A: seen {t-shirt, trouser, coat, sneaker, bag}, unseen {pullover, dress, sandal, shirt,
ankle boot}. Split B (harder: no footwear or bag is ever seen): seen classes 0..4, unseen
5..9. Each of 5 seeds draws 100 training images per seen class from the train split; the
test set is 100 test-split images of every class, the same for all seeds. Reported: the
unseen images among the unseen classes only (classic zero-shot top-1, chance 20%), and
generalised zero-shot (per-class accuracy among all ten classes) seen / unseen / H, without
and with the calibration chosen on seen classes playing unseen (never on the test set).

Run: .venv/bin/python benchmarks/zeroshot_fashion.py [--seeds 0 1 2 3 4]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import FASHION_CLASSES, fashion_mnist_folder, machine, write_results
from transferkit.backbones import load_backbone
from transferkit.data import Dataset, from_folder
from transferkit.data.samples import fashion_mnist_classes
from transferkit.runs.zeroshot import zeroshot_run

SPLITS = {"A": ["pullover", "dress", "sandal", "shirt", "ankle_boot"],
          "B": FASHION_CLASSES[5:]}
RUNS = [("ridge", "descriptions"), ("ranking", "descriptions"), ("eszsl", "descriptions"),
        ("eszsl", "attributes"), ("dap", "attributes")]


def _per_class(ds: Dataset, k: int, seed: int, keep: list[str]) -> Dataset:
    import numpy as np

    rng = np.random.default_rng(seed)
    idx = [i for c, name in enumerate(ds.class_names) if name in keep
           for i in rng.choice(np.flatnonzero(ds.labels == c), k, replace=False)]
    return ds.subset(sorted(idx), source=f"{ds.source} ({k}/class, seed {seed})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--name", default="zeroshot_fashion")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp())
    pool = from_folder(fashion_mnist_folder(root / "train", "train", 300, seed=0))
    test = from_folder(fashion_mnist_folder(root / "test", "test", 100, seed=1))
    desc, attrs = fashion_mnist_classes()
    bb = load_backbone("efficientnet_lite0")
    rows: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    for split, unseen in SPLITS.items():
        seen = [c for c in FASHION_CLASSES if c not in unseen]
        for seed in args.seeds:
            train = _per_class(pool, 100, seed, seen)
            for method, side in RUNS:
                kw = {"descriptions": desc} if side == "descriptions" else {"attributes": attrs}
                t0 = time.perf_counter()
                res = zeroshot_run(train, root / f"{split}-{seed}-{method}-{side}",
                                   unseen=unseen, method=method, backbone=bb, test=test,
                                   seed=seed, **kw)
                m = res.metrics
                rows.append({"split": split, "seed": seed, "method": method, "side": side,
                             "zsl_unseen": m["zsl_unseen_accuracy"], "gzsl": m["gzsl"],
                             "gzsl_calibrated": m["gzsl_calibrated"],
                             "seconds": time.perf_counter() - t0})
                print(f"split {split} seed {seed} {method}/{side}: zsl "
                      f"{m['zsl_unseen_accuracy']:.3f}, H {m['gzsl']['H']:.3f} -> "
                      f"{m['gzsl_calibrated']['H']:.3f}", flush=True)

    def ms(v: list[float]) -> str:
        return f"{100 * statistics.mean(v):.1f} ± {100 * statistics.pstdev(v):.1f}"

    table = []
    for split in SPLITS:
        for method, side in RUNS:
            rs = [r for r in rows if r["split"] == split and r["method"] == method
                  and r["side"] == side]
            g, c = [r["gzsl"] for r in rs], [r["gzsl_calibrated"] for r in rs]
            table.append([split, f"{method} ({side})", ms([r["zsl_unseen"] for r in rs]),
                          " / ".join(ms([x[k] for x in g]) for k in ("seen", "unseen", "H")),
                          " / ".join(ms([x[k] for x in c]) for k in ("seen", "unseen", "H")),
                          f"{statistics.mean(r['seconds'] for r in rs):.1f}"])
    notes = (f"Seeds {args.seeds} (training draws); mean ± sd in %. Split A: unseen "
             f"{', '.join(SPLITS['A'])}; split B: unseen {', '.join(SPLITS['B'])}. Total "
             f"{(time.perf_counter() - t_start) / 60:.1f} min (features cached after the "
             f"first run).")
    write_results(args.name, {"machine": machine(), "rows": rows}, table,
                  ["split", "method (class vectors)", "zero-shot unseen top-1",
                   "GZSL seen / unseen / H", "calibrated seen / unseen / H", "time (s)"],
                  notes)


if __name__ == "__main__":
    main()
