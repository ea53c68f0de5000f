"""Sane bounds on a saved run's ``config.json``: a hand-edited or damaged value (an input
size of 100000², a negative image size, a NaN mean) is a RunError naming the file and the
key, before anything is built from it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from transferkit.errors import RunError

#: key -> (lowest, highest) for every number under that key (lists: each element)
BOUNDS: dict[str, tuple[float, float]] = {
    "input_size": (1, 4096), "size": (1, 4096), "image_size": (1, 4096),
    "feature_dim": (1, 1_000_000), "in_dim": (1, 1_000_000), "hidden": (1, 1_000_000),
    "num_classes": (1, 1_000_000), "max_length": (1, 1_000_000), "widths": (1, 65_536),
    "crop_pct": (0.01, 4.0), "std": (1e-12, 1e6), "mean": (-1e6, 1e6),
    "sample_rate": (1, 1_000_000), "window_frames": (1, 1_000_000),
}


def _numbers(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _numbers(v)]
    return [value]


def check_config(cfg: Any, path: str | Path, where: str = "") -> None:
    """Raise a RunError for the first value of ``cfg`` outside :data:`BOUNDS`."""
    if isinstance(cfg, dict):
        for key, value in cfg.items():
            at = f"{where}.{key}" if where else str(key)
            if key in BOUNDS and value is not None:
                lo, hi = BOUNDS[key]
                for x in _numbers(value):
                    ok = (isinstance(x, (int, float)) and not isinstance(x, bool)
                          and math.isfinite(x) and lo <= x <= hi)
                    if not ok:
                        raise RunError(f"{path}: {at} = {value!r} is out of range (each "
                                       f"value {lo:g} to {hi:g}); the file was edited or is "
                                       f"damaged: restore it or fit again")
            else:
                check_config(value, path, at)
    elif isinstance(cfg, list):
        for i, value in enumerate(cfg):
            check_config(value, path, f"{where}[{i}]")
