"""The no-transfer baseline: raw pixels, resized, as features."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from transferkit.backbones.base import Backbone, Stage
from transferkit.data.images import load_image


class PixelBackbone(Backbone):
    """Images resized to ``size`` x ``size`` RGB, scaled to [0, 1] and flattened."""

    modality = "image"
    default_batch_size = 256

    def __init__(self, size: int = 32) -> None:
        self.size = int(size)
        self.name = "pixels"
        self.feature_dim = 3 * self.size * self.size
        self.model = nn.Flatten()
        self.data_config = {"input_size": [3, self.size, self.size], "interpolation": "bilinear",
                            "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "crop_pct": 1.0,
                            "crop_mode": "center"}
        self._cache_key = None

    def prepare(self, item: Any) -> torch.Tensor:
        """Resize to a square and scale to [0, 1], CHW float."""
        img = load_image(item, self.size).resize((self.size, self.size), Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.float32) / 255.0
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous()

    def forward_features(self, batch: torch.Tensor) -> torch.Tensor:
        """Flattened pixels."""
        return self.model(batch)

    def spec(self) -> dict[str, Any]:
        """Type and size."""
        return {"type": "pixels", "name": "pixels", "size": self.size,
                "feature_dim": self.feature_dim, "data_config": self.data_config}

    def stages(self) -> list[Stage]:
        """No trainable stages."""
        return []


def pixel_backbone(keep_head: bool = False) -> PixelBackbone:
    """The registry's ``pixels``: 32 x 32 pixels."""
    return PixelBackbone(32)
