"""A small CNN with random weights: training from scratch, the no-transfer baseline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from torch import nn
from torchvision.transforms import v2

from transferkit.backbones.base import Backbone, Stage
from transferkit.data.images import load_image


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
        nn.MaxPool2d(2))


class _Pool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class ScratchCNN(Backbone):
    """Conv blocks (two 3x3 conv-BN-ReLU, then 2x2 max-pool), then global average pooling;
    or, with ``fc``, the last block's map pooled to 7x7, flattened and a fully connected
    ReLU layer of ``fc`` units (LeNet's way: where a stroke is matters for digits)."""

    modality = "image"
    default_batch_size = 128
    pretrained = False

    def __init__(self, image_size: int = 64, widths: Sequence[int] = (32, 64, 128, 256),
                 seed: int = 0, name: str = "cnn", fc: int | None = None) -> None:
        self.name = name
        self.image_size = int(image_size)
        self.widths = [int(w) for w in widths]
        self.seed = int(seed)
        self.fc = None if fc is None else int(fc)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            blocks: list[nn.Module] = [
                _block(a, b) for a, b in zip([3, *self.widths[:-1]], self.widths, strict=True)]
            if self.fc is not None:
                blocks.append(nn.Sequential(nn.AdaptiveAvgPool2d(7), nn.Flatten(),
                                            nn.Linear(self.widths[-1] * 49, self.fc),
                                            nn.ReLU()))
        self.model = nn.Sequential(*blocks, nn.Identity() if self.fc else _Pool()).eval()
        self.feature_dim = self.fc or self.widths[-1]
        s = self.image_size
        self.data_config = {"input_size": [3, s, s], "interpolation": "bilinear",
                            "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "crop_pct": 1.0,
                            "crop_mode": "center"}
        self.transform = v2.Compose([
            v2.Resize((s, s), interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
            v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=[0.5] * 3, std=[0.5] * 3)])
        self._cache_key: str | None = None

    def prepare(self, item: Any) -> torch.Tensor:
        """Load an image, resize to a square, scale to [-1, 1]."""
        img: Image.Image = load_image(item, self.image_size)
        return self.transform(img)

    def forward_features(self, batch: torch.Tensor) -> torch.Tensor:
        """Globally average-pooled output of the last block."""
        return self.model(batch)

    def spec(self) -> dict[str, Any]:
        """Architecture and preprocessing."""
        return {"type": "cnn", "name": self.name, "image_size": self.image_size,
                "widths": self.widths, "fc": self.fc, "feature_dim": self.feature_dim,
                "data_config": self.data_config}

    def stages(self) -> list[Stage]:
        """One stage per conv block (and the fully connected layer)."""
        out = []
        for i in range(len(self.model) - 1):
            block = self.model[i]
            names = [f"{i}.{n}" for n, _ in block.named_parameters()]
            name = f"block{i}" if i < len(self.widths) else "fc"
            out.append(Stage(name=name, modules=[block], param_names=names))
        return out

    def sequential_stages(self) -> list[nn.Module]:
        """The stages, then the pooling (or nothing, with ``fc``)."""
        return list(self.model)

    def with_image_size(self, size: int) -> ScratchCNN:
        """The same weights, fed ``size`` x ``size`` images."""
        other = ScratchCNN(image_size=size, widths=self.widths, seed=self.seed, name=self.name,
                           fc=self.fc)
        other.model.load_state_dict(self.model.state_dict())
        return other


def scratch_cnn(keep_head: bool = False) -> ScratchCNN:
    """The registry's ``cnn``: 4 blocks at 64 px, random weights (seed 0)."""
    return ScratchCNN()


def lenet(keep_head: bool = False) -> ScratchCNN:
    """The registry's ``lenet``: a LeNet-sized CNN (2 conv blocks of 16 and 32 channels, a
    128-unit fully connected layer, 28 px), random weights (seed 0): digit-sized images
    trained from scratch, fast on a CPU."""
    return ScratchCNN(image_size=28, widths=(16, 32), name="lenet", fc=128)
