"""The training parameters every gradient strategy takes, declared once (importing this is
cheap: no PyTorch, so the registry and the command line can read the names)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

#: how every estimator class is made a dataclass: keyword-only parameters (scikit-learn's
#: ``get_params`` reads them from ``__init__``), scikit-learn's own repr, identity equality
ESTIMATOR = {"kw_only": True, "eq": False, "repr": False}


@dataclass(**ESTIMATOR)
class TrainParams:
    """``epochs`` (None: the strategy's own rule), ``lr`` (None: the strategy's default),
    ``batch_size``, ``optimizer`` (adamw|sgd), ``schedule`` (cosine|onecycle|constant),
    ``warmup_epochs``, ``weight_decay``, ``patience`` (early stopping on validation; 0 or
    None: never), ``clip_grad_norm``, ``precision`` (auto|32|bf16|16), ``group_by_length``
    (texts: batches of similar length), ``checkpoint_dir`` + ``resume`` (continue a killed
    run), ``progress``, ``log`` (a callable receiving one line per epoch), ``device``."""

    epochs: int | None = None
    lr: float | None = None
    batch_size: int = 32
    optimizer: str = "adamw"
    schedule: str = "cosine"
    warmup_epochs: float | None = None
    weight_decay: float = 0.01
    patience: int | None = None
    clip_grad_norm: float | None = None
    precision: str = "auto"
    group_by_length: bool = True
    checkpoint_dir: str | Path | None = None
    resume: bool = False
    progress: Any = None
    log: Callable[[str], None] | None = None
    device: Any = "auto"


#: the shared training parameters, with their defaults
TRAIN_PARAMS: dict[str, Any] = {f.name: f.default for f in fields(TrainParams)}
