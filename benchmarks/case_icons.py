"""Case study 2 of seed 004 on icons: many classes, a handful of drawings each, unseen styles.

Classes are freedesktop icon names (>= 100); train / validation / test are disjoint GROUPS of
icon themes (related themes, found by near-duplicate drawings, stay on one side), so the
test set is a style no training theme shares. Rows, all on one split and scored on its test
set, chosen on its validation set:
- the seed's recipe: a frozen pretrained extractor + a dense head (512 ReLU units) trained on
  the features of the training icons and of K augmented copies of each (rotation, shift,
  zoom, colour jitter; never flipped: go-next / go-previous; validation never augmented),
  features extracted once and cached;
- the probe (logistic regression) on Lite0 / Lite1 / Lite2 features, and raw pixels;
- fine-tuning Lite0 (transferkit's ``finetune``, no fallback to the probe);
- a small CNN trained from scratch (``finetune`` on ``cnn``).
C (and the K-copies choice) is picked on validation accuracy; the test set only scores.
Frozen rows at 128 px (the icons are drawn at 48 px); fine-tuning at 96 px and the scratch
CNN at 48 px (the CPU budget: 2 shared cores).

Run: .venv/bin/python benchmarks/case_icons.py [--split 0] [--copies 4], once per split;
then ``--summary`` writes results/case_icons_splits.{json,md}: each row's mean ± std over
the splits run (each a different unseen theme group) and the seed recipe over the scratch CNN.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import RESULTS, machine, write_results
from _icons_common import (
    augmented_copies,
    confused_pairs,
    fit_on_val,
    score,
    write_case_report,
)
from transferkit.backbones.registry import load_backbone
from transferkit.data.icons import icon_task
from transferkit.data.load import load_data

SPLITS = [  # (test themes, validation themes): rotating which unseen group is tested
    (("elementary-xfce",), ("Paper",)),
    (("Paper",), ("breeze",)),
    (("breeze",), ("elementary-xfce",)),
]
BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--split", type=int, default=0, help="which SPLITS entry (0-2)")
    ap.add_argument("--copies", type=int, default=2, help="augmented copies per image")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=4, help="fine-tuning epochs")
    ap.add_argument("--finetune-size", type=int, default=96, help="fine-tuning input px")
    ap.add_argument("--scratch-size", type=int, default=48, help="scratch CNN input px")
    ap.add_argument("--scratch-epochs", type=int, default=20)
    ap.add_argument("--skip", default="", help="comma-separated rows to leave out")
    ap.add_argument("--summary", action="store_true",
                    help="only summarise the splits' results files")
    args = ap.parse_args()
    if args.summary:
        summary()
        return
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    root = Path(tempfile.mkdtemp())
    test_t, val_t = SPLITS[args.split]
    manifest = icon_task(root / "data", test_themes=test_t, val_themes=val_t)
    splits = load_data(root / "data")
    names = splits.train.class_names
    print(f"{len(names)} classes; train {len(splits.train)}, val {len(splits.val)}, "
          f"test {len(splits.test)}; groups {manifest['groups']}")
    rows: dict[str, dict[str, Any]] = {}
    probas: dict[str, np.ndarray] = {}
    aug = augmented_copies(splits.train, root / "aug", args.copies, seed=args.split)
    for name in ("pixels", *BACKBONES):
        if name in skip:
            continue
        bb = load_backbone(name)
        if name != "pixels":
            bb = bb.with_image_size(args.image_size)
        t0 = time.perf_counter()
        feats = {r: bb.extract(d).features for r, d in splits.items()}
        sec = time.perf_counter() - t0
        y = {r: np.asarray(d.labels) for r, d in splits.items()}
        res = fit_on_val("logreg", feats["train"], y["train"], feats["val"], y["val"],
                         len(names))
        probas[f"probe {name}"] = res["head"](feats["test"])
        rows[f"probe {name}"] = {**score(probas[f"probe {name}"], y["test"]),
                                 "val_accuracy": res["val"], "C": res["C"],
                                 "seconds": sec + res["seconds"]}
        if name != BACKBONES[0]:  # the dense-head rows: Lite0 only (CPU budget)
            continue
        t0 = time.perf_counter()
        fa = bb.extract(aug).features
        sec_aug = time.perf_counter() - t0
        for label, (x, yy) in {
                f"dense head {name}": (feats["train"], y["train"]),
                f"dense head + augment {name}": (np.vstack([feats["train"], fa]),
                                                 np.concatenate([y["train"], aug.labels]))
        }.items():
            res = fit_on_val("mlp", x, yy, feats["val"], y["val"], len(names))
            probas[label] = res["head"](feats["test"])
            rows[label] = {**score(probas[label], y["test"]), "val_accuracy": res["val"],
                           "C": res["C"], "seconds": sec + res["seconds"]
                           + (sec_aug if "augment" in label else 0.0)}
        print({k: round(v["accuracy"], 3) for k, v in rows.items()})
    _finish(rows, probas, splits, manifest, args, root)  # partial results, rewritten below
    trained = _trained_rows(splits, root, args, skip)
    for label, (row, proba) in trained.items():
        rows[label], probas[label] = row, proba
    _finish(rows, probas, splits, manifest, args, root)


def _trained_rows(splits: Any, root: Path, args: Any, skip: set[str]
                  ) -> dict[str, tuple[dict[str, Any], np.ndarray]]:
    """Fine-tuning Lite0 and the from-scratch CNN through transferkit's one Trainer."""
    from transferkit.runs.fit import FitRequest, fit_into

    out: dict[str, tuple[dict[str, Any], np.ndarray]] = {}
    plan = {"finetune efficientnet_lite0": dict(backbone="efficientnet_lite0",
                                                 image_size=args.finetune_size,
                                                 epochs=args.epochs),
            "scratch cnn": dict(backbone="cnn", image_size=args.scratch_size,
                                epochs=args.scratch_epochs)}
    y = np.asarray(splits.test.labels)
    for label, kw in plan.items():
        if label.split()[0] in skip:
            continue
        t0 = time.perf_counter()
        req = FitRequest.from_args(splits, strategy="finetune", fallback="none",
                                   seed=args.split, **kw)
        run = fit_into(root / label.replace(" ", "_"), req, log=print)
        proba = np.asarray(run.evaluation.proba)
        out[label] = ({**score(proba, y), "val_accuracy": run.val_score, "C": None,
                       "seconds": time.perf_counter() - t0}, proba)
        print(label, round(out[label][0]["accuracy"], 3))
    return out


def _finish(rows: dict[str, dict[str, Any]], probas: dict[str, np.ndarray], splits: Any,
            manifest: dict[str, Any], args: Any, root: Path) -> None:
    names = splits.train.class_names
    y = np.asarray(splits.test.labels)
    best = max((k for k in rows if rows[k]["val_accuracy"] is not None),
               key=lambda k: rows[k]["val_accuracy"])
    scratch = rows.get("scratch cnn", {}).get("accuracy")
    recipe = rows.get("dense head + augment efficientnet_lite0", {}).get("accuracy")
    ratio = None if not scratch or recipe is None else recipe / scratch
    pairs = confused_pairs(y, probas[best].argmax(1), names)
    report = write_case_report(root / "report", best, rows, probas[best], splits, pairs)
    payload = {"settings": vars(args), "machine": machine(), "rows": rows, "chosen": best,
               "recipe_over_scratch": ratio, "confused_pairs": pairs,
               "groups": manifest["groups"], "roles": manifest["roles"],
               "near_duplicate_fraction": manifest["near_duplicate_fraction"],
               "n_classes": len(names), "n": {r: len(d) for r, d in splits.items()},
               "dropped_classes": len(manifest["dropped"]), "failed_renders":
               manifest["failed"]}
    table = [[k + (" (chosen)" if k == best else ""), _f(v["val_accuracy"]),
              _f(v["accuracy"]), _f(v["top5"]), _f(v["macro_f1"]), f"{v['seconds']:.0f}"]
             for k, v in rows.items()]
    test_t, val_t = SPLITS[args.split]
    notes = (f"Icons: {len(names)} icon names; train {len(splits.train)} / val "
             f"{len(splits.val)} / test {len(splits.test)} images. Test themes' group: "
             f"{', '.join(test_t)}; validation: {', '.join(val_t)}; theme groups "
             f"{manifest['groups']}. Frozen rows at {args.image_size} px; fine-tuning at "
             f"{args.finetune_size} px, {args.epochs} epochs; scratch CNN at "
             f"{args.scratch_size} px, {args.scratch_epochs} epochs; "
             f"augmented copies per training image: {args.copies}. Seed recipe (frozen Lite0 "
             f"+ dense head + augmentation) / scratch CNN = "
             f"{'n/a' if ratio is None else f'{ratio:.2f}x'} (target >= 2x). Most confused "
             f"pairs (chosen row): " + "; ".join(f"{a} / {b} ({n})" for a, b, n in pairs[:8])
             + f". Per-class table and gallery: the HTML report ({report.name}, not kept). "
             f"Machine: {machine()}")
    write_results(f"case_icons_split{args.split}", payload, table,
                  ["row", "val accuracy", "test top-1", "test top-5", "macro F1", "time (s)"],
                  notes)
    (RESULTS / f"case_icons_split{args.split}_per_class.md").write_text(
        _per_class_md(best, probas[best], y, names))


def _per_class_md(best: str, proba: np.ndarray, y: np.ndarray, names: list[str]) -> str:
    from transferkit.evaluation.metrics import classification_metrics

    m = classification_metrics(y, proba.argmax(1), proba, names)
    lines = [f"# Per-class test report of the chosen row: {best}", "",
             "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for n in names:
        p = m["per_class"][n]
        if p["support"]:
            lines.append(f"| {n} | {p['precision']:.2f} | {p['recall']:.2f} | "
                         f"{p['f1']:.2f} | {p['support']} |")
    return "\n".join(lines) + "\n"


def summary() -> None:
    """results/case_icons_splits: every row's test figures, mean ± std over the splits."""
    import json

    done = [i for i in range(len(SPLITS)) if (RESULTS / f"case_icons_split{i}.json").exists()]
    runs = [json.loads((RESULTS / f"case_icons_split{i}.json").read_text()) for i in done]
    names = [n for n in runs[0]["rows"] if all(n in r["rows"] for r in runs)]
    keys = ("val_accuracy", "accuracy", "top5", "macro_f1")
    stats = {n: {k: [r["rows"][n][k] for r in runs] for k in keys} for n in names}
    table = [[n, *(f"{np.mean(v[k]):.3f} ± {np.std(v[k]):.3f}" for k in keys),
              " / ".join(f"{a:.3f}" for a in v["accuracy"])] for n, v in stats.items()]
    ratios = [r["recipe_over_scratch"] for r in runs]
    recipe, scratch = "dense head + augment efficientnet_lite0", "scratch cnn"
    of_means = np.mean(stats[recipe]["accuracy"]) / np.mean(stats[scratch]["accuracy"])
    chosen = [r["chosen"] for r in runs]
    picked = [r["rows"][c]["accuracy"] for r, c in zip(runs, chosen, strict=True)]
    picked_ratio = np.mean(picked) / np.mean(stats[scratch]["accuracy"])
    notes = (f"{len(runs)} splits (test theme group: "
             f"{', '.join(SPLITS[i][0][0] for i in done)}); mean ± std over the "
             f"splits (population std). Seed recipe / scratch CNN per split: "
             f"{' / '.join(f'{x:.2f}x' for x in ratios)}; of the means {of_means:.2f}x "
             f"(target >= 2x). The row chosen on validation in each split: "
             f"{'; '.join(chosen)}: test top-1 {' / '.join(f'{a:.3f}' for a in picked)}, "
             f"mean {np.mean(picked):.3f}, {picked_ratio:.2f}x the scratch CNN's mean.")
    write_results("case_icons_splits", {"splits": len(runs), "stats": stats,
                                        "recipe_over_scratch": ratios,
                                        "recipe_over_scratch_of_means": of_means,
                                        "chosen": chosen, "chosen_test_accuracy": picked,
                                        "chosen_over_scratch": picked_ratio,
                                        "machine": machine()},
                  table, ["row", "val accuracy", "test top-1", "test top-5", "macro F1",
                          "test top-1 per split"], notes)


def _f(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


if __name__ == "__main__":
    main()
