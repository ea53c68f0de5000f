"""LoRA's recipe on a development split: which of holdout-only, refit and no holdout to keep.

Since 2026-11-24 a seeded 20% holdout of the training data picks fine-tuning's epoch when no
validation data is given; LoRA's recipe does not train again on all the data afterwards
(``refit="auto"``), so at 8 labels per class it trains on 6-7. This decides, on glosses that
no other figure here is scored on, between: a 20% holdout (``holdout=0.2``), the same
with ``refit=True`` (the epoch picked on the holdout, then all the data for that many
epochs) and ``holdout=0`` (all the data, the recipe's fixed ~100 steps, the last epoch kept:
the behaviour before 2026-11-24).

Data: WordNet noun glosses (10 lexicographer classes), never the 2,000 test glosses of
``text_fewshot``: per seed, ``k`` training glosses per class and a development set of 100
per class, disjoint, from the rest. Seeds 10-12 (the text benchmark uses 0-2).

Run: .venv/bin/python benchmarks/lora_refit_dev.py [--shots 8 64] [--seeds 10 11 12]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

from _common import machine, write_results
from transferkit.backbones import load_backbone
from transferkit.data import Dataset
from transferkit.data.samples import wordnet_fewshot
from transferkit.strategies import LoRAClassifier

VARIANTS: dict[str, dict[str, Any]] = {  # explicit: LoRAClassifier's default is the last
    "holdout 0.2 (the default until 2026-12-05)": {"holdout": 0.2},
    "holdout 0.2 + refit": {"holdout": 0.2, "refit": True},
    "no holdout (all data, last epoch; the default since)": {"holdout": 0.0},
}


def dev_split(k: int, seed: int, per_dev: int = 100) -> tuple[Dataset, Dataset]:
    """(train, dev): ``k`` and ``per_dev`` glosses per class, disjoint, drawn by
    ``wordnet_fewshot`` (so never from text_fewshot's test set) and split with ``seed``."""
    pool, _ = wordnet_fewshot(k + per_dev, seed=seed)
    assert pool.labels is not None
    rng = np.random.default_rng(seed)
    train = np.concatenate([rng.permutation(np.flatnonzero(pool.labels == c))[:k]
                            for c in range(len(pool.class_names))])
    dev = np.setdiff1d(np.arange(len(pool)), train)
    return pool.subset(np.sort(train)), pool.subset(dev)


def run(variant: str, train: Dataset, dev: Dataset, seed: int) -> dict[str, Any]:
    """One LoRA fit: its accuracy on the development glosses."""
    t0 = time.perf_counter()
    est = LoRAClassifier(backbone=load_backbone("minilm"), cache=False, seed=seed,
                         progress=False, **VARIANTS[variant]).fit(train)
    names = np.asarray(dev.class_names)
    acc = float(np.mean(np.asarray(est.predict(dev)) == names[dev.labels]))
    return {"variant": variant, "seed": seed, "dev_accuracy": acc,
            "best_epoch": est.best_epoch_, "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, nargs="+", default=[8, 64])
    ap.add_argument("--seeds", type=int, nargs="+", default=[10, 11, 12])
    args = ap.parse_args()
    rows = []
    for k in args.shots:
        for seed in args.seeds:
            train, dev = dev_split(k, seed)
            for variant in VARIANTS:
                r = {"k": k, **run(variant, train, dev, seed)}
                print(r, flush=True)
                rows.append(r)
    table = []
    for k in args.shots:
        for variant in VARIANTS:
            accs = [r["dev_accuracy"] for r in rows if r["k"] == k and r["variant"] == variant]
            secs = [r["seconds"] for r in rows if r["k"] == k and r["variant"] == variant]
            mean, sd = statistics.mean(accs), statistics.pstdev(accs)
            table.append([k, variant, f"{mean:.4f} ± {sd:.4f}",
                          " / ".join(f"{a:.4f}" for a in accs), f"{statistics.mean(secs):.1f}"])
    where = machine()
    notes = (f"Seeds {args.seeds}; dev = 100 WordNet glosses per class outside the training "
             "draw and outside text_fewshot's test set; minilm, LoRA r=8, the recipe's ~100 "
             f"steps. Machine: {where}")
    write_results("lora_refit_dev", {"rows": rows, "machine": where}, table,
                  ["labels/class", "variant", "dev accuracy (mean ± sd)", "per seed",
                   "time (s)"], notes)


if __name__ == "__main__":
    main()
