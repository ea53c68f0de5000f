"""Multi-task learning where seed 001's conditions hold: one data-poor task (the characters of
one script, a few drawings per class) beside related data-rich tasks (the characters of four
other scripts, 15 drawings per class) that share low-level features (strokes drawn by the
same Noto font families, see transferkit.data.glyphs). A small CNN from scratch
(transferkit's `cnn` backbone, 32 px) is trained jointly with hard sharing and per-task
BatchNorm statistics, beside each task's single-task model with the same budget; the
data-poor task's size and the network's width vary. Test: 5 drawings per class of every
task, the same for every setting. The per-task guard is reported too.

Run: .venv/bin/python benchmarks/multitask_glyphs.py [--seeds 0 1 2] [--sizes 5 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np

from _common import RESULTS, machine, write_results
from transferkit.backbones.cnn import ScratchCNN
from transferkit.data import Dataset, from_arrays
from transferkit.data.glyphs import build
from transferkit.multitask import MultiTaskLearner
from transferkit.multitask.net import SHARING

RICH = ("armenian", "thai", "tamil", "ethiopic")
POOR = "georgian"
WIDTHS = {"shallow": (32, 64), "narrow": (16, 32, 64), "wide": (32, 64, 128, 256)}


def _task(images: np.ndarray, labels: np.ndarray, names: list[str], idx: np.ndarray,
          source: str) -> Dataset:
    return from_arrays([images[i] for i in idx], [names[labels[i]] for i in idx],
                       class_names=names, source=source)


def _split(labels: np.ndarray, train_k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class: the last 5 drawings for test (fixed), ``train_k`` of the first 15 (seeded)."""
    rng = np.random.default_rng(seed)
    tr, te = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        te.append(idx[15:20])
        tr.append(rng.choice(idx[:15], train_k, replace=False))
    return np.concatenate(tr), np.concatenate(te)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[5, 10])
    ap.add_argument("--widths", nargs="+", default=list(WIDTHS))
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--chars", type=int, default=30)
    ap.add_argument("--rich", type=int, nargs="+", default=[15],
                    help="drawings per class of the data-rich tasks (at most 15)")
    ap.add_argument("--finetune-epochs", type=int, default=0)
    ap.add_argument("--sharing", default="hard", choices=SHARING)
    ap.add_argument("--poor-branch", type=int, default=None,
                    help="hierarchical: the shared stages the data-poor task reads (default all)")
    ap.add_argument("--name", default="multitask_glyphs")
    ap.add_argument("--append", action="store_true",
                    help="keep the rows already in results/NAME.json (other settings, seeds)")
    args = ap.parse_args()
    t_start = time.perf_counter()
    sets = {s: build([s], per_class=20, max_chars=args.chars, seed=i)
            for i, s in enumerate((*RICH, POOR))}
    rows: list[dict[str, Any]] = []
    if args.append and (RESULTS / f"{args.name}.json").is_file():
        rows = json.loads((RESULTS / f"{args.name}.json").read_text())["rows"]
    for seed in args.seeds:
        for k in args.sizes:
            for rich in args.rich:
                train, tests = {}, {}
                for s, g in sets.items():
                    tr, te = _split(g.labels, k if s == POOR else rich, seed)
                    train[s] = _task(g.images, g.labels, g.class_names, tr, f"{s} train")
                    tests[s] = _task(g.images, g.labels, g.class_names, te, f"{s} test")
                for wname in args.widths:
                    _setting(args, rows, train, tests, seed, k, rich, wname)
                    _write(args, rows, t_start)


def _setting(args: Any, rows: list[dict[str, Any]], train: dict[str, Dataset],
             tests: dict[str, Dataset], seed: int, k: int, rich: int, wname: str) -> None:
    bb = ScratchCNN(image_size=32, widths=WIDTHS[wname], seed=seed)
    branch = None if args.poor_branch is None else {POOR: args.poor_branch}
    learner = MultiTaskLearner(bb, sharing=args.sharing, branch=branch, bn="task",
                               epochs=args.epochs, seed=seed, cache=False,
                               finetune_epochs=args.finetune_epochs)
    t0 = time.perf_counter()
    fit = learner.fit(train, tests)
    for t in train:
        ft = fit.finetuned.get(t)
        rows.append({"seed": seed, "poor_size": k, "rich_size": rich, "width": wname,
                     "sharing": _sharing(args),
                     "task": t, "joint": fit.joint[t].test_accuracy,
                     "single": fit.single[t].test_accuracy,
                     "finetuned": None if ft is None else ft.test_accuracy,
                     "kept": fit.kept.get(t), "guarded": fit.chosen(t).test_accuracy,
                     "seconds": time.perf_counter() - t0, "phase_seconds": fit.seconds})
        print(rows[-1], flush=True)


def _gap(rs: list[dict[str, Any]], task: str, key: str) -> float | None:
    vals = [100 * (r[key] - r["single"]) for r in rs if r["task"] == task and r[key] is not None]
    return statistics.mean(vals) if vals else None


def _f(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.1f}"


def _sharing(args: Any) -> str:
    """The sharing pattern as the table names it (hierarchical: where the poor task reads)."""
    if args.sharing == "hierarchical" and args.poor_branch is not None:
        return f"hierarchical ({POOR} reads {args.poor_branch} stages)"
    return args.sharing


def _write(args: Any, rows: list[dict[str, Any]], t_start: float) -> None:
    table = []
    keys = dict.fromkeys((r["poor_size"], r["rich_size"], r["width"], r.get("sharing", "hard"))
                         for r in rows)
    for k, rich, w, sharing in keys:
        rs = [r for r in rows if (r["poor_size"], r["rich_size"], r["width"],
                                  r.get("sharing", "hard")) == (k, rich, w, sharing)]
        poor = [r for r in rs if r["task"] == POOR]
        worst = {key: min((g for g in (_gap(rs, t, key) for t in RICH) if g is not None),
                          default=None) for key in ("joint", "guarded", "finetuned")}
        net = w if sharing == "hard" else f"{w}, {sharing}"
        table.append([k, rich, net, f"{statistics.mean(r['single'] for r in poor):.3f}",
                      f"{statistics.mean(r['joint'] for r in poor):.3f}",
                      _f(_gap(rs, POOR, "joint")), _f(worst["joint"]),
                      _f(_gap(rs, POOR, "guarded")), _f(worst["guarded"]),
                      _f(_gap(rs, POOR, "finetuned")), _f(worst["finetuned"]),
                      len(poor)])
    notes = (f"Data-rich tasks: {', '.join(RICH)} ({args.chars} characters each, the given "
             f"drawings per class); data-poor task: {POOR} ({args.chars} characters, the given "
             f"drawings per class). Test: 5 other drawings per class ({5 * args.chars} images "
             f"per task: one image = {100 / (5 * args.chars):.2f} points). Scratch CNN at 32 "
             f"px (conv-BN-ReLU blocks; widths: {WIDTHS}); hard sharing unless the network "
             f"column names another pattern, per-task BN "
             f"statistics, equal weighting, "
             f"{args.epochs} epochs, 20% of each task held out to pick the epoch (classes with "
             f"fewer than 5 drawings stay whole). Points = model minus the single-task model's "
             f"test accuracy (same budget), seed mean; 'worst data-rich' = the lowest of the "
             f"four data-rich tasks; guarded = the model the per-task guard kept on validation; "
             f"fine-tuned = the joint model then {args.finetune_epochs} epochs on the task "
             f"alone at a tenth of the learning rate (--finetune-each). The last "
             f"invocation took {(time.perf_counter() - t_start) / 60:.1f} min.")
    write_results(args.name, {"machine": machine(), "rows": rows}, table,
                  ["data-poor drawings/class", "data-rich drawings/class", "network",
                   f"{POOR} single-task", f"{POOR} joint", f"{POOR} joint vs single",
                   "worst data-rich joint vs single", f"{POOR} guarded vs single",
                   "worst data-rich guarded vs single", f"{POOR} fine-tuned vs single",
                   "worst data-rich fine-tuned vs single", "seeds"], notes)


if __name__ == "__main__":
    main()
