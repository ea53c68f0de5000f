"""The frozen prefix of a trunk, run once: its fastest engine (ONNX Runtime on the CPU,
BatchNorm folded and channels-last elsewhere) and its outputs for a dataset, batch by batch."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import torch
from torch import nn

from transferkit.backbones import Backbone, default_cache_dir
from transferkit.backbones.base import autocast_engine
from transferkit.backbones.pipeline import prepared_batches
from transferkit.backbones.speed import fold_batchnorm, onnx_engine
from transferkit.data.dataset import Dataset
from transferkit.device import default_workers
from transferkit.errors import DataError


def prefix_batches(bb: Backbone, ds: Dataset, fast: Callable[[torch.Tensor], torch.Tensor],
                    device: torch.device) -> Iterator[torch.Tensor]:
    """The frozen prefix's output for ``ds``, batch by batch (items prepared as for training,
    by the backbone's own transform, in workers on a GPU), on ``device``."""
    items = [bb.normalize_item(it) for it in ds.items]
    bs = 16 if device.type == "cpu" else 256
    batches = [list(range(s, min(s + bs, len(items)))) for s in range(0, len(items), bs)]
    pipe = Backbone.pipeline(bb, device)  # the training transform, not a device-side one
    workers = default_workers(device)
    with torch.inference_mode():
        for prep in prepared_batches(pipe, items, list(ds.origins), batches, workers=workers,
                                     pin=device.type == "cuda"):
            if prep.bad:
                raise DataError(next(iter(prep.bad.values())))
            yield fast(pipe.to_input(prep.batch, device)).float().contiguous()


def prefix_engine(bb: Backbone, prefix: nn.Module, n_freeze: int, device: torch.device,
                   precision: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The fastest runner of the frozen leading stages (as for feature extraction): on the
    CPU in fp32 ONNX Runtime when available, else BatchNorm folded into the convolutions,
    channels-last, on ``device`` (in autocast when ``precision`` asks)."""
    size = bb.data_config.get("input_size", [3, 224, 224])  # type: ignore[attr-defined]
    example = torch.randn(2, *size, generator=torch.Generator().manual_seed(0))
    exact = device.type == "cpu" and precision == "32"
    if exact and os.environ.get("TRANSFERKIT_ENGINE", "auto") in ("auto", "onnxruntime"):
        name = f"prefix{n_freeze}-{size[-1]}px-{bb.cache_key()}.onnx"
        prefix.to(device)
        fast = onnx_engine(prefix, example, default_cache_dir() / "engines" / name)
        if fast is not None:
            return fast
    prefix.to(device)
    folded = fold_batchnorm(prefix, example.to(device)).to(memory_format=torch.channels_last)
    return autocast_engine(lambda x: folded(x.contiguous(memory_format=torch.channels_last)),
                           device, precision)
