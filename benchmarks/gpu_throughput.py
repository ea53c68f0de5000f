"""transferkit on a GPU beside the plain loop a user writes, measured in one run.

Rows (EfficientNet-Lite0, 224 px, features from files on disk):
- compute only (one batch of 256 reused): fp32, and bf16 autocast + channels-last;
- the plain loop: a timm model on the device fed by ``DataLoader(num_workers=W,
  pin_memory=True)`` with timm's eval transform, W = 8 and 16;
- transferkit's ``extract`` as a user gets it (``--device auto``: device-side preprocessing,
  batched GPU JPEG decoding, bf16 autocast, workers sized to the cores), and with the PIL
  preprocessing (``TRANSFERKIT_PREPROCESS=host``), each with its agreement (mean cosine) to the
  CPU-transform fp32 features and a probe's test accuracy on both;
- fine-tuning, 1,000 images x 5 epochs, first 4 of 8 stages frozen / none frozen, beside a
  plain bf16 loop doing the same work;
- ``transferkit fit DATA --strategy probe`` on the 4,000 images, end to end.

Two image sets: 4,000 Fashion-MNIST test PNGs (28 px, 400 per class) and >= 1,500 JPEG photos
of 500x375 cut from scikit-image's sample photographs (random crops of the scaled photo,
half of them mirrored, quality 90; the photo's name is the class).

On a CPU-only machine: ``--prepare DIR`` writes the inputs (the PNGs and the source photos;
small enough to carry to the GPU machine); ``--quick`` runs every row at a tiny size on the
CPU to check the script. On the GPU machine:
  PYTHONPATH=.site:src python benchmarks/gpu_throughput.py --data DIR
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import FASHION_CLASSES, fashion_mnist, machine, write_results

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "hubble_deep_field",
          "immunohistochemistry", "retina", "cat", "coins"]


def prepare(root: Path, per_class: int) -> None:
    """Write root/fmnist/<class>/*.png and root/photos/<name>.png (the sources of the JPEGs)."""
    from PIL import Image
    from skimage import data

    x, y = fashion_mnist("test")
    rng = np.random.default_rng(0)
    for c, name in enumerate(FASHION_CLASSES):
        (root / "fmnist" / name).mkdir(parents=True, exist_ok=True)
        for i in np.sort(rng.choice(np.flatnonzero(y == c), per_class, replace=False)):
            Image.fromarray(x[i]).save(root / "fmnist" / name / f"t10k_{i:05d}.png")
    (root / "photos").mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        if hasattr(data, name):
            Image.fromarray(getattr(data, name)()).convert("RGB").save(
                root / "photos" / f"{name}.png")


def make_jpegs(photos: Path, out: Path, n: int, seed: int = 0) -> Path:
    """``n`` 500x375 JPEGs cut from the photos (random crops of the photo scaled so its
    shorter side is 420-600 px, half mirrored), one class folder per photo."""
    from PIL import Image, ImageOps

    srcs = sorted(photos.glob("*.png"))
    rng = np.random.default_rng(seed)
    for k in range(n):
        src = srcs[k % len(srcs)]
        im = Image.open(src).convert("RGB")
        s = rng.uniform(420, 600) / min(im.size)
        im = im.resize((max(500, round(im.size[0] * s)), max(375, round(im.size[1] * s))))
        x0 = int(rng.integers(0, im.size[0] - 500 + 1))
        y0 = int(rng.integers(0, im.size[1] - 375 + 1))
        im = im.crop((x0, y0, x0 + 500, y0 + 375))
        if k % 2:
            im = ImageOps.mirror(im)
        (out / src.stem).mkdir(parents=True, exist_ok=True)
        im.save(out / src.stem / f"{k:05d}.jpg", quality=90)
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def compute_only(device: torch.device, n_batches: int, batch: int = 256) -> dict[str, float]:
    """Images per second of the network alone, one batch of ``batch`` reused."""
    from transferkit.backbones.timm_backbone import bundled_efficientnet_lite0

    model = bundled_efficientnet_lite0().model.to(device).eval()
    x = torch.randn(batch, 3, 224, 224, device=device)
    out = {}
    for name, dtype, cl in (("fp32", None, False), ("bf16_channels_last", torch.bfloat16, True)):
        m = model.to(memory_format=torch.channels_last) if cl else model
        xi = x.contiguous(memory_format=torch.channels_last) if cl else x
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype,
                                                    enabled=dtype is not None):
            m(xi)
            sync(device)
            t0 = time.perf_counter()
            for _ in range(n_batches):
                m(xi)
            sync(device)
        out[name] = batch * n_batches / (time.perf_counter() - t0)
    return out


def plain_extract(ds: Any, device: torch.device, workers: int) -> tuple[float, np.ndarray]:
    """The loop a user writes: timm model on the device, DataLoader with timm's transform."""
    from transferkit.backbones.timm_backbone import bundled_efficientnet_lite0
    from transferkit.data import load_image

    bb = bundled_efficientnet_lite0()
    model = bb.model.to(device).eval()

    class Files(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(ds)

        def __getitem__(self, i: int) -> torch.Tensor:
            return bb.transform(load_image(ds.items[i]))

    loader = torch.utils.data.DataLoader(Files(), batch_size=256, num_workers=workers,
                                         pin_memory=device.type == "cuda")
    t0 = time.perf_counter()
    feats = []
    with torch.inference_mode():
        for x in loader:
            feats.append(model(x.to(device, non_blocking=True)).float().cpu())
    sync(device)
    return len(ds) / (time.perf_counter() - t0), torch.cat(feats).numpy()


def ours_extract(ds: Any, device: torch.device, preprocess: str) -> tuple[float, np.ndarray]:
    """transferkit's extract on ``device`` (no feature cache), cold."""
    from transferkit.backbones.timm_backbone import bundled_efficientnet_lite0

    os.environ["TRANSFERKIT_PREPROCESS"] = preprocess
    try:
        bb = bundled_efficientnet_lite0().place(str(device))
        bb.engine(device, "bf16" if device.type == "cuda" else "32")  # built outside the clock
        t0 = time.perf_counter()
        f = bb.extract(ds, cache=False).features
        sync(device)
        return len(ds) / (time.perf_counter() - t0), f
    finally:
        os.environ.pop("TRANSFERKIT_PREPROCESS", None)


def probe_accuracy(f: np.ndarray, y: np.ndarray) -> float:
    """Logistic regression on half the items (stratified, seed 0), accuracy on the rest."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    a, b, ya, yb = train_test_split(f, y, test_size=0.5, stratify=y, random_state=0)
    sc = StandardScaler().fit(a)
    clf = LogisticRegression(max_iter=2000).fit(sc.transform(a), ya)
    return float((clf.predict(sc.transform(b)) == yb).mean())


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).mean())


def plain_finetune(train: Any, test: Any, freeze: int, epochs: int, device: torch.device,
                   workers: int) -> dict[str, float]:
    """The plain GPU loop: DataLoader workers, bf16 autocast, the first ``freeze`` stages
    frozen (in eval mode), a new head; AdamW 1e-4 / head 1e-3, cosine per step, batch 64."""
    from torch import nn

    from transferkit.backbones.timm_backbone import bundled_efficientnet_lite0
    from transferkit.data import load_image

    t0 = time.perf_counter()
    bb = bundled_efficientnet_lite0()
    model = bb.model.to(device)
    torch.manual_seed(0)
    head = nn.Linear(bb.feature_dim, len(train.class_names)).to(device)
    frozen = {n for s in bb.stages()[:freeze] for n in s.param_names}
    for n, p in model.named_parameters():
        p.requires_grad_(n not in frozen)
    frozen_modules = [m for s in bb.stages()[:freeze] for m in s.modules]

    class Files(torch.utils.data.Dataset):
        def __init__(self, ds: Any) -> None:
            self.ds = ds

        def __len__(self) -> int:
            return len(self.ds)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return bb.transform(load_image(self.ds.items[i])), int(self.ds.labels[i])

    loader = torch.utils.data.DataLoader(Files(train), batch_size=64, shuffle=True,
                                         num_workers=workers, pin_memory=True,
                                         generator=torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW([{"params": [p for p in model.parameters() if p.requires_grad],
                              "lr": 1e-4}, {"params": head.parameters(), "lr": 1e-3}],
                            weight_decay=0.01)
    total = epochs * len(loader)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + np.cos(np.pi * min(1.0, s / total))))
    for _ in range(epochs):
        model.train()
        for m in frozen_modules:
            m.eval()
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16,
                                enabled=device.type == "cuda"):
                loss = nn.functional.cross_entropy(
                    head(model.forward_head(model.forward_features(x), pre_logits=True)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    sync(device)
    fit_s = time.perf_counter() - t0
    model.eval()
    _, f = plain_extract(test, device, workers)
    with torch.no_grad():
        pred = head(torch.as_tensor(f, device=device)).argmax(1).cpu().numpy()
    return {"fit_seconds": fit_s, "accuracy": float((pred == test.labels).mean())}


def ours_finetune(train: Any, test: Any, freeze: int, epochs: int,
                  device: torch.device) -> dict[str, float]:
    """transferkit's finetune doing the plain loop's work exactly (no head phase, holdout,
    probe guard, refit or early stop)."""
    from transferkit.strategies import FineTuneClassifier

    t0 = time.perf_counter()
    est = FineTuneClassifier(freeze=freeze, epochs=epochs, batch_size=64, lr=1e-4,
                             head_lr=1e-3, head_epochs=0, holdout=0, fallback="none",
                             refit=False, patience=0, train_bn=True, augment="none",
                             seed=0, cache=False, device=str(device)).fit(train)
    sync(device)
    fit_s = time.perf_counter() - t0
    acc = float((est.predict_proba(test).argmax(1) == test.labels).mean())
    return {"fit_seconds": fit_s, "accuracy": acc, "prefix_seconds": est.prefix_seconds_}


def cli_probe(data: Path, device: torch.device) -> float:
    """Seconds of ``transferkit fit DATA --strategy probe`` end to end (report included)."""
    out = Path(tempfile.mkdtemp()) / "run"
    env = dict(os.environ, TRANSFERKIT_CACHE_DIR=str(Path(tempfile.mkdtemp())))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "transferkit.cli", "fit", str(data), "--out",
                    str(out), "--strategy", "probe", "--device", str(device)], check=True,
                   env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def extraction_rows(name: str, ds: Any, device: torch.device, workers: list[int],
                    ref: np.ndarray | None) -> tuple[list[list[Any]], dict[str, Any]]:
    """Plain loops and transferkit's extraction on one image set, with feature agreement
    (to ``ref``, the CPU-transform fp32 features, or the fp32 plain loop) and probe
    accuracy."""
    rows, out = [], {}
    y = np.asarray(ds.labels)
    base = None
    for w in workers:
        ips, f = plain_extract(ds, device, w)
        base = f if base is None else base
        out[f"plain_{w}_workers"] = {"img_per_s": ips}
        rows.append([name, f"plain DataLoader loop, {w} workers, fp32", f"{ips:,.0f}", "1.000",
                     f"{probe_accuracy(f, y):.3f}"])
    ref = base if ref is None else ref
    for label, prep in (("transferkit extract (default: device-side preprocessing, bf16)",
                         "auto"), ("transferkit extract, PIL preprocessing in workers",
                                   "host")):
        ips, f = ours_extract(ds, device, prep)
        out[f"transferkit_{prep}"] = {"img_per_s": ips, "cosine_to_reference": cosine(f, ref),
                                      "probe_accuracy": probe_accuracy(f, y)}
        rows.append([name, label, f"{ips:,.0f}", f"{cosine(f, ref):.4f}",
                     f"{probe_accuracy(f, y):.3f}"])
    return rows, out


def finetune_rows(ds: Any, device: torch.device, workers: int, epochs: int
                  ) -> tuple[list[list[Any]], dict[str, Any]]:
    """Fine-tuning on the first 100 images per class, tested on 100 others per class."""
    y = np.asarray(ds.labels)
    rng = np.random.default_rng(0)
    train_idx, test_idx = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n = min(100, len(idx) // 2)
        train_idx += list(idx[:n])
        test_idx += list(idx[n:2 * n])
    train, test = ds.subset(sorted(train_idx)), ds.subset(sorted(test_idx))
    rows, out = [], {}
    for freeze in (4, 0):
        plain = plain_finetune(train, test, freeze, epochs, device, workers)
        ours = ours_finetune(train, test, freeze, epochs, device)
        ratio = plain["fit_seconds"] / ours["fit_seconds"]
        out[f"freeze{freeze}"] = {"plain": plain, "transferkit": ours, "speedup": ratio}
        label = f"fine-tune {len(train)} images x {epochs} epochs, {freeze} of 8 stages frozen"
        rows.append([label, f"plain loop ({workers} workers, bf16)",
                     f"{plain['fit_seconds']:.1f} s", "", f"{plain['accuracy']:.3f}"])
        rows.append([label, "transferkit finetune", f"{ours['fit_seconds']:.1f} s "
                     f"({ratio:.2f}x the plain loop's speed)", "", f"{ours['accuracy']:.3f}"])
    return rows, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--prepare", type=Path, help="write the inputs into this folder and stop")
    ap.add_argument("--data", type=Path, help="the folder --prepare wrote")
    ap.add_argument("--per-class", type=int, default=400)
    ap.add_argument("--jpegs", type=int, default=1500)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, on the CPU: a check")
    args = ap.parse_args()
    if args.prepare:
        prepare(args.prepare, args.per_class)
        return
    from transferkit.data import from_folder
    from transferkit.device import resolve_device

    device = resolve_device("auto")
    data = args.data or Path(tempfile.mkdtemp())
    if args.data is None:
        prepare(data, 20 if args.quick else args.per_class)
    pngs = from_folder(data / "fmnist")
    jpegs = from_folder(make_jpegs(data / "photos", Path(tempfile.mkdtemp()) / "jpegs",
                                   40 if args.quick else args.jpegs))
    workers = [2] if args.quick else [8, 16]
    info = {"machine": machine(), "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "settings": vars(args) | {"prepare": None, "data": str(data)}}
    info["compute_only"] = (compute_only(device, 1, 8) if args.quick
                            else compute_only(device, 20))
    rows = [["random batch of 256, reused", f"compute only, {k}", f"{v:,.0f}", "", ""]
            for k, v in info["compute_only"].items()]
    for name, ds in ((f"{len(pngs)} Fashion-MNIST PNGs (28 px)", pngs),
                     (f"{len(jpegs)} JPEG photos (500x375)", jpegs)):
        r, out = extraction_rows(name, ds, device, workers, None)
        rows += r
        info[name] = out
    r, info["finetune"] = finetune_rows(pngs, device, workers[-1], 1 if args.quick else
                                        args.epochs)
    rows += r
    info["cli_probe_seconds"] = cli_probe(data / "fmnist", device)
    rows.append([f"{len(pngs)} PNGs", "transferkit fit --strategy probe, end to end",
                 f"{info['cli_probe_seconds']:.1f} s", "", ""])
    header = ["data", "path", "img/s (or time)", "feature cosine to the fp32 plain loop",
              "probe accuracy (half/half split)"]
    if args.quick:
        print(json.dumps(info, indent=1, default=str))
        for row in rows:
            print(" | ".join(map(str, row)))
        return
    write_results("gpu_throughput", info, rows, header,
                  notes=f"One run on {info['gpu'] or device}; every row of a set in the same "
                        f"run. Machine: {info['machine']}")


if __name__ == "__main__":
    main()
