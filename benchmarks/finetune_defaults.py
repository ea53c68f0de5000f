"""Which fine-tuning recipe should `--strategy finetune` use? Candidates on small real tasks.

Every candidate and the default probe see the same seeded training draw; fine-tuning picks
its epoch on a held-out 20% of that draw (no test label is read for any choice), the test
set only scores. Tasks (none is the issue's example task):

- fmnist20 / fmnist50 / fmnist100: Fashion-MNIST (Debian dataset-fashion-mnist), 20/50/100
  images per class drawn from the TRAIN file with the seed; 1,000 test images (100/class)
  from the TEST file, the same for every seed.
- digits: scikit-learn's 8x8 digits, 30 per class (seeded) for training, 50 other images per
  class for testing.
- faces: scikit-image's LFW subset (faces vs non-faces, 25x25 grey), 30 per class for
  training, the other 70 per class for testing.
- wordnet8 / wordnet64 (text, MiniLM): WordNet noun glosses, 8 or 64 per class, 2,000 test.

Run: .venv/bin/python benchmarks/finetune_defaults.py [--tasks ...] [--recipes ...]
     [--seeds 0 1 2] [--name finetune_defaults]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import RESULTS, fashion_mnist_folder, machine, write_results
from transferkit.data import Dataset, from_arrays, from_folder

IMAGE_RECIPES: dict[str, dict[str, Any]] = {
    # whatever `--strategy finetune` does with no option (the recipe; it refits on all the
    # data since 2026-11-30, so the image "default+refit" row of older results is this one)
    "default": {},
    # the defaults before this benchmark: everything trains from the first epoch
    "old-default": {"freeze": 0, "head_init": "random", "head_epochs": 0, "lr": 1e-4,
                    "train_bn": True, "epochs": 10, "patience": 0, "fallback": "none"},
    # the ladder's recipe: 3 head epochs (SGD from a random head), then the top 2 stages
    "sgd-head-top2": {"head_init": "random", "freeze": -2, "head_epochs": 3, "lr": 5e-4,
                      "train_bn": False, "epochs": 15, "patience": 5, "fallback": "none"},
    # linear probe, then fine-tune (the head starts as the probe; epoch 0 competes)
    "lpft-top2-5e-4": {"head_init": "probe", "freeze": -2, "lr": 5e-4, "train_bn": False,
                       "epochs": 15, "patience": 5, "fallback": "none"},
    "lpft-top2-1e-4": {"head_init": "probe", "freeze": -2, "lr": 1e-4, "train_bn": False,
                       "epochs": 15, "patience": 5, "fallback": "none"},
    "lpft-top4-1e-4": {"head_init": "probe", "freeze": -4, "lr": 1e-4, "train_bn": False,
                       "epochs": 15, "patience": 5, "fallback": "none"},
    "lpft-top2-1e-4+augment": {"head_init": "probe", "freeze": -2, "lr": 1e-4,
                               "train_bn": False, "epochs": 15, "patience": 5,
                               "augment": "light", "fallback": "none"},
    # the recipe, its kept epoch mixed in weight space with the start (the head trained
    # alone), the weight picked on the held-out 20% (WiSE-FT; refit uses the same weight)
    "default+wise": {"wise": "auto"},
    # the same from the probe's head (LP-FT, then WiSE-FT between the probe and the result)
    "lpft+wise": {"head_init": "probe", "wise": "auto"},
}
TEXT_RECIPES: dict[str, dict[str, Any]] = {
    "default": {},
    "default+refit": {"refit": True},
    "old-default": {"freeze": 0, "head_init": "random", "head_epochs": 0, "lr": 5e-5,
                    "epochs": 10, "patience": 0, "fallback": "none"},
    "lpft-top2-1e-4": {"head_init": "probe", "freeze": -2, "lr": 1e-4, "epochs": 15,
                       "patience": 5, "fallback": "none"},
    "lpft-top2-3e-5": {"head_init": "probe", "freeze": -2, "lr": 3e-5, "epochs": 15,
                       "patience": 5, "fallback": "none"},
    "lpft-all-3e-5": {"head_init": "probe", "freeze": 0, "lr": 3e-5, "epochs": 15,
                      "patience": 5, "fallback": "none"},
    # a random head, trained alone first (on cached embeddings), then the encoder
    "sgd-head-all-5e-5": {"head_init": "random", "head_epochs": 5, "freeze": 0, "lr": 5e-5,
                          "epochs": 15, "patience": 5, "fallback": "none"},
    "sgd-head-top2-1e-4": {"head_init": "random", "head_epochs": 5, "freeze": -2, "lr": 1e-4,
                           "epochs": 15, "patience": 5, "fallback": "none"},
    # everything from the first epoch (head at 10x lr), 15 epochs, the epoch picked on held-out
    "all-5e-5-15": {"head_init": "random", "head_epochs": 0, "freeze": 0, "lr": 5e-5,
                    "epochs": 15, "patience": 5, "fallback": "none"},
}
TASKS = ("fmnist20", "fmnist50", "fmnist100", "digits", "faces", "wordnet8", "wordnet64")


def _arrays(x: np.ndarray, y: np.ndarray, names: list[str], idx: np.ndarray,
            source: str) -> Dataset:
    return from_arrays([x[i] for i in idx], [names[y[i]] for i in idx], class_names=names,
                       source=source)


def load_task(task: str, seed: int, root: Path) -> tuple[Dataset, Dataset]:
    """(train, test) of a task for a seed (the test set does not depend on the seed)."""
    if task.startswith("fmnist"):
        k = int(task.removeprefix("fmnist"))
        train = from_folder(fashion_mnist_folder(root / f"{task}-{seed}", "train", k, seed))
        test_dir = root / "fmnist-test"
        if not test_dir.exists():
            fashion_mnist_folder(test_dir, "test", 100, seed=1)
        return train, from_folder(test_dir)
    if task == "digits":
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        x = (x.reshape(-1, 8, 8) * 16).clip(0, 255).astype(np.uint8)
        names = [str(d) for d in range(10)]
        test_rng, rng = np.random.default_rng(1234), np.random.default_rng(seed)
        tr, te = [], []
        for c in range(10):
            idx = test_rng.permutation(np.flatnonzero(y == c))
            te += idx[:50].tolist()
            tr += rng.permutation(idx[50:])[:30].tolist()
        return (_arrays(x, y, names, np.array(tr), f"digits 30/class seed {seed}"),
                _arrays(x, y, names, np.array(te), "digits test"))
    if task == "faces":
        from skimage.data import lfw_subset

        x = (lfw_subset() * 255).round().astype(np.uint8)
        y = np.repeat([0, 1], 100)
        names = ["face", "not_face"]
        rng = np.random.default_rng(seed)
        tr, te = [], []
        for c in range(2):
            idx = rng.permutation(np.flatnonzero(y == c))
            tr += idx[:30].tolist()
            te += idx[30:].tolist()
        return (_arrays(x, y, names, np.array(tr), f"faces 30/class seed {seed}"),
                _arrays(x, y, names, np.array(te), f"faces test seed {seed}"))
    if task.startswith("wordnet"):
        from transferkit.data.samples import wordnet_fewshot

        return wordnet_fewshot(int(task.removeprefix("wordnet")), seed=seed)
    raise SystemExit(f"unknown task {task!r}; choose from {', '.join(TASKS)}")


def run_one(method: str, params: dict[str, Any] | None, train: Dataset, test: Dataset,
            seed: int) -> dict[str, Any]:
    """Fit one method from a cold start (its own empty feature cache) and score the test set."""
    from transferkit.strategies import FineTuneClassifier, ProbeClassifier

    text = train.modality == "text"
    backbone = "minilm" if text else "efficientnet_lite0"
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        if params is None:
            est = ProbeClassifier(backbone=backbone, cache=cache, seed=seed)
        else:
            est = FineTuneClassifier(backbone=backbone, cache=cache, seed=seed,
                                     progress=False, **params)
        est.fit(train)
        fit_s = time.perf_counter() - t0
        acc = float((est.predict_proba(test).argmax(1) == test.labels).mean())
        wall = time.perf_counter() - t0
    return {"method": method, "seed": seed, "test_accuracy": acc, "val_score": est.val_score_,
            "best_epoch": getattr(est, "best_epoch_", None),
            "wise_alpha": getattr(est, "wise_alpha_", None),
            "kept": est.model_.info.get("fallback", "fine-tuned") if params is not None
            else "probe", "probe_val_score": getattr(est, "probe_val_score_", None),
            "fit_seconds": fit_s, "wall_seconds": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS))
    ap.add_argument("--recipes", nargs="+", default=None,
                    help="recipe names (default: all for the task's modality) and 'probe'")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--name", default="finetune_defaults")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp())
    partial = RESULTS / f"{args.name}.partial.jsonl"  # results so far, in case of a kill
    done = []
    if partial.exists():
        done = [json.loads(line) for line in partial.read_text().splitlines() if line]
    rows: list[dict[str, Any]] = list(done)
    t_start = time.perf_counter()
    for task in args.tasks:
        text = task.startswith("wordnet")
        recipes = TEXT_RECIPES if text else IMAGE_RECIPES
        names = args.recipes or ["probe", *recipes]
        for seed in args.seeds:
            train, test = load_task(task, seed, root)
            for name in names:
                if name != "probe" and name not in recipes:
                    continue
                if any(r["task"] == task and r["seed"] == seed and r["method"] == name
                       for r in rows):
                    continue
                r = run_one(name, None if name == "probe" else recipes[name], train, test,
                            seed)
                r.update({"task": task, "n_train": len(train), "n_test": len(test)})
                rows.append(r)
                with partial.open("a") as f:
                    f.write(json.dumps(r) + "\n")
                print(f"{task} seed {seed} {name}: test {r['test_accuracy']:.4f}, val "
                      f"{r['val_score']}, best epoch {r['best_epoch']}, "
                      f"{r['wall_seconds']:.1f} s", flush=True)
    table, summary = [], []
    for task in dict.fromkeys(r["task"] for r in rows):
        probe = {r["seed"]: r["test_accuracy"] for r in rows
                 if r["task"] == task and r["method"] == "probe"}
        for method in dict.fromkeys(r["method"] for r in rows if r["task"] == task):
            rs = [r for r in rows if r["task"] == task and r["method"] == method]
            accs = [r["test_accuracy"] for r in rs]
            vals = [r["val_score"] for r in rs if r["val_score"] is not None]
            deltas = [r["test_accuracy"] - probe[r["seed"]] for r in rs if r["seed"] in probe]
            kept = [r.get("kept") or "fine-tuned" for r in rs]
            s = {"task": task, "method": method, "seeds": len(rs),
                 "test_mean": statistics.mean(accs),
                 "test_sd": statistics.pstdev(accs) if len(accs) > 1 else 0.0,
                 "val_mean": statistics.mean(vals) if vals else None,
                 "vs_probe": statistics.mean(deltas) if deltas else None,
                 "kept": {k: kept.count(k) for k in dict.fromkeys(kept)},
                 "seconds_mean": statistics.mean(r["wall_seconds"] for r in rs)}
            summary.append(s)
            per_seed = ", ".join(f"{100 * d:+.1f}" for d in deltas)
            table.append([task, method, len(rs), "n/a" if s["val_mean"] is None else
                          f"{s['val_mean']:.3f}", f"{s['test_mean']:.3f} ± {s['test_sd']:.3f}",
                          "" if method == "probe" or not deltas else
                          f"{100 * s['vs_probe']:+.1f} ({per_seed})",
                          ", ".join(f"{k} {v}" for k, v in s["kept"].items()),
                          f"{s['seconds_mean']:.0f}"])
    gains = sorted(s["vs_probe"] for s in summary
                   if s["method"] == "default" and s["vs_probe"] is not None)
    median = statistics.median(gains) if gains else None
    seeds = sorted({r["seed"] for r in rows})
    notes = (f"Seeds {seeds}. val = accuracy on the held-out 20% of the training draw "
             f"that picked the epoch and the model (the probe: cross-validated accuracy of its "
             f"chosen C); test = the task's test set, never read for any choice. vs probe = "
             f"test accuracy minus the probe's on the same seed, in points (mean, then per "
             f"seed). kept = the model the default ended with (fine-tuned, or the probe when "
             f"the probe scored at least as well on the held-out data). Time = fit + predict "
             f"from an empty feature cache, 2 CPU threads, efficientnet_lite0 at 224 px / "
             f"MiniLM. Default vs probe, median task: "
             f"{'n/a' if median is None else f'{100 * median:+.1f}'} points. Total "
             f"{(time.perf_counter() - t_start) / 60:.1f} min this invocation.")
    write_results(args.name, {"machine": machine(), "rows": rows, "summary": summary,
                              "recipes": {"image": IMAGE_RECIPES, "text": TEXT_RECIPES}},
                  table, ["task", "method", "seeds", "val", "test (mean ± sd)",
                          "vs probe (points)", "kept", "time (s)"],
                  notes)


if __name__ == "__main__":
    main()
