"""The seeds' case-study ladder on Fashion-MNIST: 100 labels per class, 2,000 test images.

Training data: 100 seeded random images per class from Debian's Fashion-MNIST TRAIN file
(10% of them held out for validation: best-epoch selection); test data: 200 seeded random
images per class from the TEST file. Every rung of ``transferkit compare`` on that one split.

Run: .venv/bin/python benchmarks/finetune_ladder.py [--image-size 128] [--epochs 15] [--seed 0]
(``--seed S`` draws another training sample and trains with seed S; the test set stays.)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import fashion_mnist_folder, machine, write_results
from transferkit.data import from_folder
from transferkit.runs.compare import compare_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--scratch-image-size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--scratch-epochs", type=int, default=30)
    ap.add_argument("--head-epochs", type=int, default=3)
    ap.add_argument("--rungs", default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp())
    train = from_folder(fashion_mnist_folder(root / "train", "train", 100, seed=args.seed))
    test = from_folder(fashion_mnist_folder(root / "test", "test", 200, seed=1))
    out = root / "ladder"
    t0 = time.perf_counter()
    res = compare_run(train, out, test=test, rungs=args.rungs, val_fraction=0.1,
                      epochs=args.epochs, scratch_epochs=args.scratch_epochs,
                      head_epochs=args.head_epochs, image_size=args.image_size,
                      scratch_image_size=args.scratch_image_size, seed=args.seed, cache=False,
                      log=print)
    total = time.perf_counter() - t0
    rows = []
    payload: dict = {"settings": vars(args), "machine": machine(), "rungs": {}}
    for r in res.results:
        m = r.metrics or {}
        payload["rungs"][r.rung.name] = {"val_accuracy": r.val_score,
                                         "accuracy": m.get("accuracy"),
                                         "macro_f1": m.get("macro_f1"),
                                         "roc_auc": m.get("roc_auc_ovr_macro"),
                                         "seconds": r.seconds,
                                         "trainable_params": r.trainable_params,
                                         "best_epoch": r.best_epoch, "error": r.error}
        rows.append([r.rung.name + (" (chosen)" if r is res.best else ""), _f(r.val_score),
                     _f(m.get("accuracy")), _f(m.get("macro_f1")),
                     _f(m.get("roc_auc_ovr_macro")), f"{r.seconds:.0f}",
                     f"{r.trainable_params:,}" if r.trainable_params else "", r.best_epoch])
    # the best of each kind is chosen on validation accuracy; the test set only reports
    best_scratch = max((r for r in res.results if r.rung.scratch and r.val_score is not None),
                       key=lambda r: r.val_score, default=None)
    best_transfer = max((r for r in res.results if not r.rung.scratch
                         and r.val_score is not None), key=lambda r: r.val_score, default=None)
    payload["total_seconds"] = total
    verdict = ""
    if best_scratch and best_transfer:
        gap = best_transfer.metrics["accuracy"] - best_scratch.metrics["accuracy"]
        payload["best_transfer_minus_best_scratch"] = gap
        verdict = (f"Best transfer rung on validation: {best_transfer.rung.name}, test "
                   f"{best_transfer.metrics['accuracy']:.3f}, vs best from-scratch rung "
                   f"{best_scratch.rung.name}, test {best_scratch.metrics['accuracy']:.3f}: "
                   f"{100 * gap:+.1f} points.")
    notes = (f"Fashion-MNIST (Debian dataset-fashion-mnist): 1,000 training images (100/class, "
             f"seed {args.seed}; 900 train + 100 validation), 2,000 test images (200/class, "
             f"seed 1). "
             f"Transfer rungs: efficientnet_lite0 at {args.image_size} px, {args.epochs} epochs "
             f"(two-stage rungs: {args.head_epochs} head-only epochs first); scratch rungs: "
             f"small CNN at {args.scratch_image_size} px, {args.scratch_epochs} epochs. "
             f"Ladder wall time {total / 60:.1f} min. {verdict} Machine: {machine()}")
    name = "finetune_ladder" + (f"_seed{args.seed}" if args.seed else "")
    write_results(name, payload, rows,
                  ["rung", "val accuracy", "test accuracy", "macro F1", "ROC AUC", "time (s)",
                   "trainable params", "best epoch"], notes)
    print(f"report: {out / 'report.html'}")


def _f(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


if __name__ == "__main__":
    main()
