"""Feature-extraction throughput of efficientnet_lite0 at 224 px: transferkit vs a plain loop.

Both read the same real images (the bundled Fashion-MNIST sample) with the same timm
preprocessing, in the same process, one after the other. The plain loop is what a user
writes by hand: timm model, eval(), torch.no_grad(), batch 64, default memory format.
Then the same extraction again from transferkit's feature cache.

Run: .venv/bin/python benchmarks/extract_throughput.py [--n 384]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _common import machine, write_results
from transferkit.backbones import FeatureCache, load_backbone
from transferkit.data import fashion_mnist_sample, from_folder, load_image


def plain_loop(backbone, files: list[Path], batch_size: int = 64) -> np.ndarray:
    """The baseline: a hand-written loop over the same timm model and transform."""
    model = backbone.model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(files), batch_size):
            x = torch.stack([backbone.transform(load_image(f)) for f in files[i:i + batch_size]])
            out.append(model.forward_head(model.forward_features(x), pre_logits=True))
    return torch.cat(out).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=384, help="number of images")
    args = ap.parse_args()
    files = list(from_folder(fashion_mnist_sample()).items)[: args.n]
    engine_dir = tempfile.mkdtemp()
    os.environ["TRANSFERKIT_CACHE"] = engine_dir  # start with no built engine
    backbone = load_backbone("efficientnet_lite0")
    plain_loop(backbone, files[:8])  # warm-up
    t0 = time.perf_counter()
    backbone.extract(files[:8], cache=False)  # builds the ONNX Runtime engine, once
    t_build = time.perf_counter() - t0
    os.environ["TRANSFERKIT_ENGINE"] = "torch"
    torch_backbone = load_backbone("efficientnet_lite0")
    torch_backbone.extract(files[:8], cache=False)
    del os.environ["TRANSFERKIT_ENGINE"]

    t0 = time.perf_counter()
    ref = plain_loop(backbone, files)
    t_plain = time.perf_counter() - t0
    t0 = time.perf_counter()
    torch_backbone.extract(files, cache=False)
    t_torch = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as d:
        cache = FeatureCache(d)
        t0 = time.perf_counter()
        cold = backbone.extract(files, cache=cache)
        t_cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        warm = backbone.extract(files, cache=cache)
        t_warm = time.perf_counter() - t0
    assert warm.computed == 0 and warm.cache_hits == len(files)
    diff = float(np.abs(cold.features - ref).max())
    n = len(files)
    res = {
        "images": n, "input_px": 224, "machine": machine(),
        "plain_loop": {"seconds": t_plain, "images_per_s": n / t_plain,
                       "batch_size": 64, "memory_format": "contiguous"},
        "transferkit_cold": {"seconds": t_cold, "images_per_s": n / t_cold,
                             "batch_size": backbone.default_batch_size,
                             "memory_format": "channels_last", "batchnorm_folded": True},
        "transferkit_cached": {"seconds": t_warm, "images_per_s": n / t_warm},
        "transferkit_torch_engine": {"seconds": t_torch, "images_per_s": n / t_torch,
                                     "batchnorm_folded": True, "memory_format": "channels_last"},
        "engine": backbone.engine_, "engine_build_seconds_once": t_build,
        "speedup_cold_vs_plain": t_plain / t_cold,
        "speedup_cached_vs_cold": t_cold / t_warm,
        "max_abs_feature_diff_vs_plain": diff,
    }
    rows = [["plain loop (timm, no_grad, batch 64, NCHW)", f"{t_plain:.2f}", f"{n / t_plain:.1f}",
             "1.0x"],
            ["transferkit extract, cold, PyTorch engine (BN folded, channels-last)",
             f"{t_torch:.2f}", f"{n / t_torch:.1f}", f"{t_plain / t_torch:.2f}x"],
            [f"transferkit extract, cold ({backbone.engine_} engine, default)", f"{t_cold:.2f}",
             f"{n / t_cold:.1f}", f"{t_plain / t_cold:.2f}x"],
            ["transferkit extract, cached re-run", f"{t_warm:.3f}", f"{n / t_warm:.0f}",
             f"{t_plain / t_warm:.0f}x ({t_cold / t_warm:.0f}x vs cold)"]]
    write_results("extract_throughput", res, rows, ["path", "seconds", "images/s", "speed-up"],
                  notes=f"{n} Fashion-MNIST images decoded and preprocessed to 224 px "
                        f"(timm eval transform) in both paths; max |feature difference| "
                        f"vs plain loop: {diff:.2e}. Building the ONNX Runtime engine (export "
                        f"+ check, kept on disk for later runs) took {t_build:.1f} s once.")


if __name__ == "__main__":
    main()
