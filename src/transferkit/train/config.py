"""What shapes a training run (also the fingerprint a resume must match)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "onecycle", "constant")
PRECISIONS = ("auto", "32", "bf16", "16")
MODES = ("auto", "max", "min")


@dataclass
class TrainConfig:
    """Everything that shapes a training run (also the fingerprint a resume must match).

    ``eval_start``: score the validation data before the first epoch too (row ``epoch`` 0),
    so the starting weights are kept when no epoch beats them.
    ``monitor`` is any key of an epoch's row (what validation returns, or a logged training
    scalar); ``mode`` says whether larger is better (``auto``: smaller for names with
    "loss", larger otherwise).
    """

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    clip_grad_norm: float | None = None
    precision: str = "auto"
    patience: int | None = None
    monitor: str = "val_accuracy"
    mode: str = "auto"
    restore_best: bool = True
    eval_start: bool = False
    seed: int = 0
    group_by_length: bool = True

    def validate(self) -> None:
        """Raise ValueError naming the offending option."""
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {self.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule {self.schedule!r}: choose one of {', '.join(SCHEDULES)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: choose one of "
                             f"{', '.join(PRECISIONS)}")
        if not self.monitor or not isinstance(self.monitor, str):
            raise ValueError(f"monitor must name a logged value, got {self.monitor!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r}: choose one of {', '.join(MODES)}")
        if self.warmup_epochs < 0 or self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs must be within 0..epochs, got {self.warmup_epochs}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be at least 1, got {self.patience}")

    def larger_is_better(self) -> bool:
        """Whether the monitored value improves upwards."""
        return self.mode == "max" or (self.mode == "auto" and "loss" not in self.monitor)

    def optimizer_for(self, groups: list[dict[str, Any]]) -> Any:
        """The optimiser (AdamW, or SGD with Nesterov momentum) over parameter ``groups``,
        each at ``lr`` times its ``lr_scale``."""
        import torch

        pg = []
        for g in groups:
            g = dict(g)
            scale = float(g.pop("lr_scale", 1.0))
            g.setdefault("lr", self.lr * scale)
            pg.append(g)
        if self.optimizer == "sgd":
            return torch.optim.SGD(pg, lr=self.lr, momentum=self.momentum, nesterov=True,
                                   weight_decay=self.weight_decay)
        return torch.optim.AdamW(pg, lr=self.lr, weight_decay=self.weight_decay)
