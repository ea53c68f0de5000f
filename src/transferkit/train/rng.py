"""The random state a checkpoint carries, so a resumed run continues exactly."""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import torch


def get_rng() -> dict[str, Any]:
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    st: dict[str, Any] = {"torch": torch.get_rng_state(),
                          "numpy": json.dumps([keys.tolist(), pos, has_gauss, gauss]),
                          "python": json.dumps(random.getstate())}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    keys, pos, has_gauss, gauss = json.loads(st["numpy"])
    np.random.set_state(("MT19937", np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    py = json.loads(st["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))
    if torch.cuda.is_available() and "cuda" in st:
        torch.cuda.set_rng_state_all(st["cuda"])


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
