"""Training data for the Trainer: items prepared by a backbone, optionally augmented."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from transferkit.backbones.base import Backbone
from transferkit.data.images import load_image

MAX_CACHED_BYTES = 3 * 2**30  # prepared tensors kept in memory up to this size


class ItemData:
    """``data[i]`` = (model input tensor, label) for a backbone; indexable, sized.

    Unlabelled items (``labels=None``) carry the label -1.

    Without augmentation each item is prepared once and kept in memory (up to
    ``MAX_CACHED_BYTES``). With augmentation (a PIL -> PIL callable, run before the backbone's
    own ``transform``) the decoded image is kept — shrunk to twice the model's input size —
    and augmented afresh at every access, drawing from torch's global RNG.
    """

    def __init__(self, backbone: Backbone, items: Sequence[Any], labels: Sequence[int] | None,
                 augment: Callable[[Image.Image], Image.Image] | None = None) -> None:
        if augment is not None and (backbone.modality != "image" or
                                    not hasattr(backbone, "transform")):
            raise ValueError(f"augmentation needs an image backbone with a 'transform'; "
                             f"{backbone.name!r} has none")
        self.backbone = backbone
        self.items = [backbone.normalize_item(it) for it in items]
        self.labels = (np.full(len(self.items), -1, dtype=np.int64) if labels is None
                       else np.asarray(labels, dtype=np.int64))
        self.augment = augment
        self._prepared: dict[int, torch.Tensor] = {}
        self._decoded: dict[int, Image.Image] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        y = int(self.labels[i])
        if self.augment is None:
            x = self._prepared.get(i)
            if x is None:
                x = self.backbone.prepare(self.items[i])
                size = x.numel() * x.element_size()
                if self._bytes + size <= MAX_CACHED_BYTES:
                    self._prepared[i] = x
                    self._bytes += size
            return x, y
        img = self._decoded.get(i)
        if img is None:
            img = _shrink(load_image(self.items[i], self.backbone.image_side()), self.backbone)
            self._decoded[i] = img
        return self.backbone.transform(self.augment(img)), y  # type: ignore[attr-defined]

    def lengths(self) -> list[int] | None:
        """Tokens per item for text backbones (the Trainer batches similar lengths), else None."""
        if self.backbone.modality != "text":
            return None
        return [len(self[i][0]) for i in range(len(self))]

    def collate(self, samples: list[tuple[Any, int]]) -> tuple[Any, torch.Tensor]:
        """(the backbone's batch of inputs, label tensor): stacked images, padded tokens."""
        xs, ys = zip(*samples, strict=True)
        return self.backbone.collate(list(xs)), torch.as_tensor(ys, dtype=torch.long)


class TensorData:
    """``data[i]`` = (row i of a tensor, label): precomputed activations or features
    (unlabelled rows, ``labels=None``, carry the label -1)."""

    def __init__(self, x: torch.Tensor, labels: Sequence[int] | np.ndarray | None) -> None:
        self.x = x
        self.labels = torch.as_tensor(np.full(len(x), -1, dtype=np.int64) if labels is None
                                      else np.asarray(labels, dtype=np.int64))
        if len(self.x) != len(self.labels):
            raise ValueError(f"{len(self.x)} inputs but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.labels[i]


def _shrink(img: Image.Image, backbone: Backbone) -> Image.Image:
    side = int(backbone.data_config["input_size"][-1]) * 2  # type: ignore[attr-defined]
    if min(img.size) > side:
        img = img.copy()
        img.thumbnail((side * img.size[0] // min(img.size), side * img.size[1] // min(img.size)),
                      Image.Resampling.BICUBIC)
    return img
