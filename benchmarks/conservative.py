"""Does conservative fine-tuning help? Plain vs L2-SP vs feature preservation (LwF-style).

Fashion-MNIST, 100 labels per class (900 train + 100 validation, seed 0), 2,000 test images
(200/class, seed 1); efficientnet_lite0 at 96 px with the first 3 stages frozen (their output
cached) and the other 5 fine-tuned, no augmentation, lr 1e-3 (head 1e-2), 10 epochs: a
regime where the network can drift far from its pretrained weights. Same split, seed and
schedule for every variant; the validation set picks the epoch. "BN statistics kept":
every BatchNorm stays on its pretrained running statistics (``train_bn=False``). The
settings are pinned (``PINNED``): the fine-tuning recipe's defaults (a head phase, epoch 0
competing, the probe guard, BatchNorm statistics kept) would otherwise decide most rows
before any penalty acts.

Run: .venv/bin/python benchmarks/conservative.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from _common import fashion_mnist_folder, machine, write_results
from transferkit.backbones import load_backbone
from transferkit.data import from_folder, make_splits
from transferkit.strategies import FineTuneClassifier

VARIANTS = {"plain fine-tuning": {}, "L2-SP α=0.01": {"l2sp": 0.01},
            "L2-SP α=0.1": {"l2sp": 0.1}, "LwF-style λ=1": {"lwf": 1.0},
            "LwF-style λ=10": {"lwf": 10.0},
            "plain, BN statistics kept": {"train_bn": False},
            "LwF-style λ=10, BN statistics kept": {"lwf": 10.0, "train_bn": False}}


#: what every variant shares: everything trains from the first epoch for all 10 epochs, the
#: trainable stages' BatchNorm statistics adapt, the model is the best validation epoch
PINNED = {"head_init": "random", "head_epochs": 0, "train_bn": True, "patience": 0,
          "fallback": "none", "freeze": 3, "epochs": 10, "lr": 1e-3, "image_size": 96}


def main() -> None:
    root = Path(tempfile.mkdtemp())
    train = from_folder(fashion_mnist_folder(root / "train", "train", 100, seed=0))
    test = from_folder(fashion_mnist_folder(root / "test", "test", 200, seed=1))
    splits = make_splits(train, test=test, val_fraction=0.1, seed=0)
    pretrained = load_backbone("efficientnet_lite0").model
    start = {k: v.detach().clone() for k, v in pretrained.named_parameters()}
    rows, payload = [], {"machine": machine(), "variants": {}}
    for name, extra in VARIANTS.items():
        t0 = time.perf_counter()
        est = FineTuneClassifier(seed=0, cache=False, **{**PINNED, **extra}).fit(
            splits.train, X_val=splits.val)
        sec = time.perf_counter() - t0
        acc = float((est.predict_proba(splits.test).argmax(1) == splits.test.labels).mean())
        now = dict(est.backbone_.model.named_parameters())
        names = [n for s in est.backbone_.stages()[3:] for n in s.param_names]
        dist = float(torch.sqrt(sum(((now[n].detach() - start[n]) ** 2).sum() for n in names)))
        payload["variants"][name] = {"accuracy": acc, "distance": dist, "seconds": sec,
                                     "best_epoch": est.best_epoch_, **extra}
        rows.append([name, f"{acc:.3f}", f"{dist:.2f}", est.best_epoch_, f"{sec:.0f}"])
        print(rows[-1], flush=True)
    notes = ("Distance = ‖w − w_pretrained‖ over the fine-tuned stages. One seed: differences "
             f"under ~1.5 points are within run-to-run noise. Machine: {machine()}")
    write_results("conservative", payload, rows,
                  ["variant", "test accuracy", "distance from pretrained", "best epoch",
                   "time (s)"], notes)


if __name__ == "__main__":
    main()
