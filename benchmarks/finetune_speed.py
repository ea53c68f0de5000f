"""Fine-tuning efficientnet_lite0 with the first stages frozen: transferkit vs a plain loop.

Same work on both sides, in one run: 1,000 real Fashion-MNIST training images (100 per
class, PNG files), the bundled ImageNet EfficientNet-Lite0 at its native 224 px timm
preprocessing, the first 6 of 8 stages frozen (their BatchNorm in eval mode), a new linear
head with the same initialisation, AdamW (backbone lr 1e-4, head lr 1e-3), cosine schedule
per step, batch 32, 5 epochs, the same shuffling seed, no augmentation. Accuracy on 1,000
Fashion-MNIST test images.

The plain loop is what a user writes by hand: a DataLoader decoding and transforming every
image every epoch and ``model(x)`` through the frozen stages each step. transferkit runs the
frozen stages once and trains the rest from their cached output.

Run: .venv/bin/python benchmarks/finetune_speed.py [--epochs 5] [--freeze 6]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from _common import fashion_mnist_folder, machine, write_results
from transferkit.backbones.timm_backbone import bundled_efficientnet_lite0
from transferkit.data import from_folder, load_image
from transferkit.strategies import FineTuneClassifier


def plain_loop(train, test, freeze: int, epochs: int, batch: int, seed: int) -> dict:
    """The baseline: a hand-written PyTorch fine-tuning loop over the same model and data."""
    t0 = time.perf_counter()
    bb = bundled_efficientnet_lite0()
    model = bb.model
    torch.manual_seed(seed)
    head = nn.Linear(bb.feature_dim, len(train.class_names))
    stages = bb.stages()
    frozen_names = {n for s in stages[:freeze] for n in s.param_names}
    for n, p in model.named_parameters():
        p.requires_grad_(n not in frozen_names)
    frozen_modules = [m for s in stages[:freeze] for m in s.modules]

    class Files(torch.utils.data.Dataset):
        def __init__(self, ds):
            self.ds = ds

        def __len__(self):
            return len(self.ds)

        def __getitem__(self, i):
            return bb.transform(load_image(self.ds.items[i])), int(self.ds.labels[i])

    loader = torch.utils.data.DataLoader(Files(train), batch_size=batch, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.AdamW([
        {"params": [p for p in model.parameters() if p.requires_grad], "lr": 1e-4},
        {"params": head.parameters(), "lr": 1e-3}], weight_decay=0.01)
    total = epochs * len(loader)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + np.cos(np.pi * min(1.0, s / total))))
    for _ in range(epochs):
        model.train()
        for m in frozen_modules:
            m.eval()
        for x, y in loader:
            feats = model.forward_head(model.forward_features(x), pre_logits=True)
            loss = nn.functional.cross_entropy(head(feats), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    fit_s = time.perf_counter() - t0
    model.eval()
    preds = []
    with torch.no_grad():
        for i in range(0, len(test), 64):
            x = torch.stack([bb.transform(load_image(p)) for p in test.items[i:i + 64]])
            preds.append(head(model.forward_head(model.forward_features(x),
                                                 pre_logits=True)).argmax(1))
    acc = float((torch.cat(preds).numpy() == test.labels).mean())
    return {"fit_seconds": fit_s, "accuracy": acc}


def transferkit_run(train, test, freeze: int, epochs: int, batch: int, seed: int) -> dict:
    t0 = time.perf_counter()
    # the plain loop's work exactly: no head phase, holdout, probe guard, refit or early stop
    est = FineTuneClassifier(freeze=freeze, epochs=epochs, batch_size=batch, lr=1e-4,
                             head_lr=1e-3, head_epochs=0, holdout=0, fallback="none",
                             refit=False, patience=0, train_bn=True, augment="none",
                             seed=seed, cache=False).fit(train)
    fit_s = time.perf_counter() - t0
    acc = float((est.predict_proba(test).argmax(1) == test.labels).mean())
    return {"fit_seconds": fit_s, "accuracy": acc, "prefix_seconds": est.prefix_seconds_,
            "train_seconds": est.train_seconds_}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--freeze", type=int, nargs="+", default=[6, 7],
                    help="numbers of frozen leading stages to measure (one row pair each)")
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp())
    train = from_folder(fashion_mnist_folder(root / "train", "train", args.per_class, seed=0))
    test = from_folder(fashion_mnist_folder(root / "test", "test", 100, seed=1))
    names = [s.name for s in bundled_efficientnet_lite0().stages()]
    print(f"{len(train)} train / {len(test)} test images; stages: {names}")
    n_images = args.epochs * len(train)
    rows, runs = [], {}
    for freeze in args.freeze:
        print(f"freeze {freeze}: trained stages {names[freeze:]}")
        tk = transferkit_run(train, test, freeze, args.epochs, args.batch, seed=0)
        print("transferkit", tk)
        plain = plain_loop(train, test, freeze, args.epochs, args.batch, seed=0)
        print("plain", plain)
        speedup = plain["fit_seconds"] / tk["fit_seconds"]
        runs[f"freeze{freeze}"] = {"transferkit": tk, "plain": plain, "speedup": speedup,
                                   "train_images_per_second": {
                                       "transferkit": n_images / tk["fit_seconds"],
                                       "plain": n_images / plain["fit_seconds"]}}
        label = f"{freeze} of {len(names)} (train {', '.join(names[freeze:])})"
        rows.append([label, "plain PyTorch loop", f"{plain['fit_seconds']:.1f}",
                     f"{n_images / plain['fit_seconds']:.1f}", "1.00×",
                     f"{plain['accuracy']:.3f}", ""])
        rows.append([label, "transferkit finetune", f"{tk['fit_seconds']:.1f}",
                     f"{n_images / tk['fit_seconds']:.1f}", f"{speedup:.2f}×",
                     f"{tk['accuracy']:.3f}",
                     f"{tk['prefix_seconds']:.1f} + {tk['train_seconds']:.1f}"])
    notes = (f"{len(train)} Fashion-MNIST train images (100/class), {args.epochs} epochs, batch "
             f"{args.batch}, efficientnet_lite0 at 224 px, AdamW lr 1e-4 / head 1e-3, cosine, "
             f"no augmentation. Accuracy on {len(test)} test images. transferkit time = "
             f"frozen-prefix pass (once) + training. Machine: {machine()}")
    write_results("finetune_speed", {"settings": vars(args), "machine": machine(), **runs},
                  rows, ["frozen stages", "path", "fit time (s)", "train img/s", "speed-up",
                         "test accuracy", "transferkit: prefix + train (s)"], notes)


if __name__ == "__main__":
    main()
