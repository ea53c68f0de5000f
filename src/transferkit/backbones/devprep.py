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
from typing import Any

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as tvf

from transferkit.data.images import load_image

_MODES = {"bicubic": InterpolationMode.BICUBIC, "bilinear": InterpolationMode.BILINEAR,
          "nearest": InterpolationMode.NEAREST}

#: a collated batch: (positions in the batch, uint8 images [n, 3, h, w] of one size) groups
Groups = list[tuple[list[int], torch.Tensor]]


class DevicePreprocess:
    """The eval transform of a timm ``data_config``, split into ``decode`` (CPU, per item),
    ``collate`` (CPU, groups of equal size) and ``to_input`` (device, per batch)."""

    def __init__(self, data_config: dict[str, Any], max_side: int | None) -> None:
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

    def decode(self, item: Any) -> torch.Tensor:
        """One item as uint8 [3, h, w] (DataError naming an unreadable file)."""
        arr = np.asarray(load_image(item, self.max_side), dtype=np.uint8)
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))

    def collate(self, images: list[torch.Tensor]) -> Groups:
        """Images of equal size stacked together, each group with its batch positions."""
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for j, im in enumerate(images):
            by_shape.setdefault(tuple(im.shape), []).append(j)
        return [(pos, torch.stack([images[j] for j in pos])) for pos in by_shape.values()]

    def to_input(self, groups: Groups, device: torch.device) -> torch.Tensor:
        """The normalised float batch [n, 3, H, W] on ``device``, in the items' order."""
        n = sum(len(pos) for pos, _ in groups)
        out = torch.empty(n, 3, *self.crop, device=device)
        mean, std = self.mean.to(device), self.std.to(device)
        for pos, x in groups:
            x = x.to(device, non_blocking=x.is_pinned()).float().div_(255.0)
            x = tvf.resize(x, self.resize, interpolation=self.mode, antialias=True)
            x = tvf.center_crop(x.clamp_(0.0, 1.0), list(self.crop))
            out[torch.as_tensor(pos, device=device)] = (x - mean) / std
        return out
