"""Assembling training batches: collating items, reading what a stream offers a batch plan
(labels, lengths), and the loggable values of a step's output (moving them to a device:
``transferkit.device.move``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

Collate = Callable[[list[Any]], Any]


def default_collate(samples: list[Any]) -> Any:
    """Stack (input tensor, label) pairs into (batch tensor, label tensor)."""
    xs, ys = zip(*samples, strict=True)
    return torch.stack(list(xs)), torch.as_tensor(ys, dtype=torch.long)


def lengths_of(data: Sequence[Any]) -> list[int] | None:
    """Per-item lengths when the data has them (``data.lengths()``: texts), else None."""
    fn = getattr(data, "lengths", None)
    return fn() if callable(fn) else None


def labels_of(data: Sequence[Any]) -> np.ndarray | None:
    labels = getattr(data, "labels", None)
    return None if labels is None else np.asarray(labels)


def as_streams(data: Sequence[Any] | Mapping[str, Sequence[Any]] | None,
                name: str) -> dict[str, Sequence[Any]]:
    if data is None:
        return {}
    if isinstance(data, Mapping):
        return dict(data)
    return {name: data}


def scalar(v: Any) -> float | None:
    """A loggable number from a step output value (0-d tensor, int, float), else None."""
    if isinstance(v, torch.Tensor):
        return float(v.detach()) if v.numel() == 1 else None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    return None


# ------------------------------------------------------------------------------ trainer
