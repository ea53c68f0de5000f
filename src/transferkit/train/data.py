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

    def take(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows ``indices`` and their labels as one batch (what stacking the items gives)."""
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        return self.x[idx.to(self.x.device)], self.labels[idx]


class TwoViews:
    """Two views of each item (e.g. FixMatch's weak and strong augmentation of the same
    image): ``data[i]`` = ((first view, second view), label)."""

    def __init__(self, first: ItemData, second: ItemData) -> None:
        if len(first) != len(second):
            raise ValueError(f"the two views have {len(first)} and {len(second)} items")
        self.first, self.second = first, second
        self.labels = first.labels

    def __len__(self) -> int:
        return len(self.first)

    def __getitem__(self, i: int) -> tuple[tuple[Any, Any], int]:
        (a, y), (b, _) = self.first[i], self.second[i]
        return (a, b), y

    def collate(self, samples: list[tuple[tuple[Any, Any], int]]
                ) -> tuple[tuple[Any, Any], torch.Tensor]:
        """((first views batched, second views batched), labels)."""
        firsts = [(a, y) for (a, _), y in samples]
        seconds = [(b, y) for (_, b), y in samples]
        xa, ys = self.first.collate(firsts)
        xb, _ = self.second.collate(seconds)
        return (xa, xb), ys


class Weighted:
    """Per-sample weights with any training data: ``data[i]`` = (x, label, weight); batches
    are (inputs, labels, weights)."""

    def __init__(self, data: Any, weights: Sequence[float] | np.ndarray) -> None:
        w = np.asarray(weights, dtype=np.float32)
        if w.shape != (len(data),):
            raise ValueError(f"{w.size} weights for {len(data)} items")
        self.data = data
        self.weights = torch.as_tensor(w)
        self.labels = getattr(data, "labels", None)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[Any, Any, torch.Tensor]:
        x, y = self.data[i]
        return x, y, self.weights[i]

    def lengths(self) -> list[int] | None:
        """The wrapped data's item lengths (texts), else None."""
        fn = getattr(self.data, "lengths", None)
        return fn() if callable(fn) else None

    def collate(self, samples: list[tuple[Any, Any, torch.Tensor]]
                ) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """(inputs, labels) as the wrapped data batches them, and the weights."""
        from transferkit.train.batches import default_collate

        inner = getattr(self.data, "collate", None)
        pairs = [(x, y) for x, y, _ in samples]
        x, y = inner(pairs) if callable(inner) else default_collate(pairs)
        return x, y, torch.stack([w for _, _, w in samples])


def _shrink(img: Image.Image, backbone: Backbone) -> Image.Image:
    side = int(backbone.data_config["input_size"][-1]) * 2  # type: ignore[attr-defined]
    if min(img.size) > side:
        img = img.copy()
        img.thumbnail((side * img.size[0] // min(img.size), side * img.size[1] // min(img.size)),
                      Image.Resampling.BICUBIC)
    return img
