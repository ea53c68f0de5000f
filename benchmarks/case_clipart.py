"""Case study 1 of seed 004 on clip art: the ladder from a CNN from scratch to fine-tuning.

Data: Debian ``openclipart-png``, ten object categories (fruit, mammals, birds, bugs,
vehicles, music, sports, tools, desserts, computer hardware), balanced at the smallest
category's usable count (48), composited on white at 128 px; per class 26 train / 10
validation / 12 test (seeded). Many classes, not the seed's two: the collection has no
cat-vs-dog pair of that size, and ten classes keep chance low (0.10). Rungs: seed 004's
six models (``transferkit compare --rungs seed``), on one split per seed; each rung's best
epoch and the recommended rung are chosen on validation accuracy (never augmented); the
test set only scores. Transfer rungs: EfficientNet-Lite0 at 128 px; scratch rungs at 48 px
(sizes and epochs cut to fit 2 shared CPU cores; the seed trained at 150 px).

Run: nice -n 10 .venv/bin/python benchmarks/case_clipart.py --seed 0   (then --summarize)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import RESULTS, machine, write_results
from transferkit.data.collections import clipart_task
from transferkit.data.load import load_data
from transferkit.runs.compare import SEED_LADDER, SEED_VAL_ACCURACY, compare_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--scratch-image-size", type=int, default=48)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--scratch-epochs", type=int, default=12)
    ap.add_argument("--head-epochs", type=int, default=2)
    ap.add_argument("--summarize", action="store_true", help="aggregate the seeds' files")
    args = ap.parse_args()
    if args.summarize:
        summarize()
        return
    root = Path(tempfile.mkdtemp())
    manifest = clipart_task(root / "data", seed=args.seed, size=args.image_size)
    splits = load_data(root / "data")
    t0 = time.perf_counter()
    res = compare_run(splits, root / "ladder", rungs="seed", epochs=args.epochs,
                      scratch_epochs=args.scratch_epochs, head_epochs=args.head_epochs,
                      image_size=args.image_size, scratch_image_size=args.scratch_image_size,
                      seed=args.seed, log=print)
    payload: dict[str, Any] = {"settings": vars(args), "machine": machine(),
                               "skipped": manifest["skipped"], "split": manifest["split"],
                               "chosen": None if res.best is None else res.best.rung.name,
                               "rungs": {}, "total_seconds": time.perf_counter() - t0}
    for r in res.results:
        m = r.metrics or {}
        payload["rungs"][r.rung.name] = {
            "scratch": r.rung.scratch, "val_accuracy": r.val_score,
            "accuracy": m.get("accuracy"), "macro_precision": m.get("macro_precision"),
            "macro_recall": m.get("macro_recall"), "macro_f1": m.get("macro_f1"),
            "roc_auc": m.get("roc_auc_ovr_macro"), "seconds": r.seconds,
            "best_epoch": r.best_epoch, "error": r.error}
    payload["gap"] = _gap(payload["rungs"])
    (RESULTS / f"case_clipart_seed{args.seed}.json").write_text(
        json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload["gap"]), f"report: {res.report_path}")
    summarize()


def _gap(rungs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Best transfer rung minus best scratch rung (each best chosen on validation), test."""
    def best(scratch: bool) -> str | None:
        cands = [(v["val_accuracy"], k) for k, v in rungs.items()
                 if v["scratch"] == scratch and v["val_accuracy"] is not None]
        return max(cands)[1] if cands else None
    s, t = best(True), best(False)
    if s is None or t is None:
        return {"best_scratch": s, "best_transfer": t, "points": None}
    return {"best_scratch": s, "best_transfer": t,
            "points": 100 * (rungs[t]["accuracy"] - rungs[s]["accuracy"])}


def summarize() -> None:
    """case_clipart.json / .md: every seed's file, mean ± std per rung, the seed beside."""
    runs = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("case_clipart_seed*.json"))]
    if not runs:
        return
    rows, agg = [], {}
    for name in SEED_LADDER:
        vals = {k: [r["rungs"][name][k] for r in runs if name in r["rungs"]
                    and r["rungs"][name][k] is not None]
                for k in ("val_accuracy", "accuracy", "macro_precision", "macro_recall",
                          "macro_f1", "roc_auc", "seconds")}
        agg[name] = {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "n": len(v)}
                     for k, v in vals.items() if v}
        chosen = sum(r["chosen"] == name for r in runs)
        rows.append([name, f"{SEED_VAL_ACCURACY[name]:.2f}"]
                    + [_ms(agg[name].get(k)) for k in ("val_accuracy", "accuracy",
                                                       "macro_precision", "macro_recall",
                                                       "macro_f1", "roc_auc")]
                    + [f"{agg[name]['seconds']['mean']:.0f}" if "seconds" in agg[name]
                       else "", f"{chosen}/{len(runs)}"])
    gaps = [r["gap"]["points"] for r in runs if r["gap"]["points"] is not None]
    payload = {"seeds": [r["settings"]["seed"] for r in runs], "rungs": agg,
               "seed_val_accuracy": SEED_VAL_ACCURACY,
               "gap_points": {"per_seed": gaps, "mean": float(np.mean(gaps)) if gaps else None,
                              "std": float(np.std(gaps)) if gaps else None},
               "gap_rungs": [r["gap"] for r in runs]}
    s = runs[0]["settings"]
    notes = (f"Clip art (Debian openclipart-png), 10 categories x 48 images (26 train / 10 "
             f"val / 12 test per class, a new seeded split per seed), seeds "
             f"{payload['seeds']}; mean ± std over seeds. Transfer rungs: efficientnet_lite0 "
             f"at {s['image_size']} px, {s['epochs']} epochs (finetune-top: {s['head_epochs']} "
             f"head-only epochs first); scratch rungs: {s['scratch_image_size']} px, "
             f"{s['scratch_epochs']} epochs. 'seed 004 (val)' is the seed's validation "
             f"accuracy on cats vs dogs (3,000 training images), from its text. Best "
             f"transfer rung minus best scratch rung (each chosen on validation), test "
             f"accuracy: {_gap_txt(payload['gap_points'])} points (target >= +10; the seed "
             f"+18 on test). Machine: {machine()}")
    write_results("case_clipart", payload, rows,
                  ["rung", "seed 004 (val)", "val accuracy", "test accuracy",
                   "macro precision", "macro recall", "macro F1", "ROC AUC", "time (s)",
                   "chosen on val"], notes)


def _ms(d: dict[str, float] | None) -> str:
    if not d:
        return "n/a"
    return f"{d['mean']:.3f} ± {d['std']:.3f}" if d["n"] > 1 else f"{d['mean']:.3f}"


def _gap_txt(g: dict[str, Any]) -> str:
    if g["mean"] is None:
        return "n/a"
    return (f"{g['mean']:+.1f} ± {g['std']:.1f} (per seed "
            + ", ".join(f"{v:+.1f}" for v in g["per_seed"]) + ")")


if __name__ == "__main__":
    main()
