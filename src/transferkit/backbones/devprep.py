"""Image preprocessing on the device: decode to uint8 on the CPU, the rest on the GPU.

The pretrained evaluation transform (resize the shorter side to ``size / crop_pct`` with the
model's interpolation, centre crop, scale to [0, 1], normalise) is done on batches that are
already on the device, so worker processes only decode and a batch crosses the bus as uint8
(4x smaller than float32). Resampling differs slightly from PIL's (antialiased bicubic in
float rather than PIL's in uint8): features agree to a cosine near 1, not bit for bit, so
they are cached under their own key (``devprep``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_jpeg, read_file
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as tvf

from transferkit.data.images import load_image

_MODES = {"bicubic": InterpolationMode.BICUBIC, "bilinear": InterpolationMode.BILINEAR,
          "nearest": InterpolationMode.NEAREST}

#: a collated batch: (positions in the batch, uint8 images [n, 3, h, w] of one size) groups
Groups = list[tuple[list[int], torch.Tensor]]
JPEG_SUFFIXES = (".jpg", ".jpeg")
#: JPEG files at most this large are decoded on the GPU (larger: in the workers, reduced)
MAX_GPU_JPEG_BYTES = 8 * 2**20


class JpegBytes:
    """A JPEG file's bytes, to be decoded on the device (``path`` names it in errors)."""

    def __init__(self, data: torch.Tensor, path: str) -> None:
        self.data, self.path = data, path


class DevicePreprocess:
    """The eval transform of a timm ``data_config``, split into ``decode`` (CPU, per item),
    ``collate`` (CPU, groups of equal size) and ``to_input`` (device, per batch)."""

    def __init__(self, data_config: dict[str, Any], max_side: int | None, *,
                 gpu_jpeg: bool = False) -> None:
        size = data_config.get("input_size", [3, 224, 224])
        self.crop = (int(size[-2]), int(size[-1]))
        crop_pct = float(data_config.get("crop_pct", 1.0) or 1.0)
        scale = [math.floor(c / crop_pct) for c in self.crop]
        self.resize = [scale[0]] if scale[0] == scale[1] else scale  # shorter side, as timm
        self.mode = _MODES.get(str(data_config.get("interpolation", "bicubic")),
                               InterpolationMode.BICUBIC)
        self.mean = torch.tensor(data_config.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1)
        self.std = torch.tensor(data_config.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1)
        self.max_side = max_side
        self.gpu_jpeg = gpu_jpeg

    def decode(self, item: Any) -> torch.Tensor | JpegBytes:
        """One item as uint8 [3, h, w] (DataError naming an unreadable file); with
        ``gpu_jpeg``, a small JPEG file's bytes (decoded later, on the device)."""
        if self.gpu_jpeg and isinstance(item, Path) and item.suffix.lower() in JPEG_SUFFIXES:
            try:
                if item.stat().st_size <= MAX_GPU_JPEG_BYTES:
                    return JpegBytes(read_file(str(item)), str(item))
            except (OSError, RuntimeError):
                pass  # the PIL path below names the problem
        return self._pil(item)

    def _pil(self, item: Any) -> torch.Tensor:
        arr = np.asarray(load_image(item, self.max_side), dtype=np.uint8)
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))

    def collate(self, images: list[torch.Tensor | JpegBytes]) -> tuple[Groups, list[Any]]:
        """Decoded images of equal size stacked together, each group with its batch
        positions; and the (position, JPEG bytes) still to decode."""
        by_shape: dict[tuple[int, ...], list[int]] = {}
        jpegs = [(j, im) for j, im in enumerate(images) if isinstance(im, JpegBytes)]
        for j, im in enumerate(images):
            if not isinstance(im, JpegBytes):
                by_shape.setdefault(tuple(im.shape), []).append(j)
        groups = [(pos, torch.stack([images[j] for j in pos])) for pos in by_shape.values()]
        return groups, [(j, im.data, im.path) for j, im in jpegs]

    def _decode_jpegs(self, jpegs: list[Any], device: torch.device) -> Groups:
        """JPEG bytes decoded in one batched call on ``device`` (PIL for any it refuses)."""
        if not jpegs:
            return []
        try:
            images = decode_jpeg([d for _, d, _ in jpegs], mode=ImageReadMode.RGB,
                                 device=device, apply_exif_orientation=True)
        except RuntimeError:  # e.g. CMYK or lossless JPEG: decode those on the CPU
            images = [self._pil(Path(p)).to(device) for _, _, p in jpegs]
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for k, im in enumerate(images):
            by_shape.setdefault(tuple(im.shape), []).append(k)
        return [([jpegs[k][0] for k in ks], torch.stack([images[k] for k in ks]))
                for ks in by_shape.values()]

    def to_input(self, batch: tuple[Groups, list[Any]], device: torch.device) -> torch.Tensor:
        """The normalised float batch [n, 3, H, W] on ``device``, in the items' order."""
        groups, jpegs = batch
        groups = [*groups, *self._decode_jpegs(jpegs, device)]
        n = sum(len(pos) for pos, _ in groups)
        out = torch.empty(n, 3, *self.crop, device=device)
        mean, std = self.mean.to(device), self.std.to(device)
        for pos, x in groups:
            x = x.to(device, non_blocking=x.is_pinned()).float().div_(255.0)
            x = tvf.resize(x, self.resize, interpolation=self.mode, antialias=True)
            x = tvf.center_crop(x.clamp_(0.0, 1.0), list(self.crop))
            out[torch.as_tensor(pos, device=device)] = (x - mean) / std
        return out
