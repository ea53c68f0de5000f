"""What one ``Trainer.fit`` works with: its set-up (:class:`Run`), the running tallies of an
epoch, the step routed through ``forward`` (for DDP), the learning-rate schedule and the
result."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from transferkit.train.batches import Collate, scalar
from transferkit.train.module import StepContext, TrainModule
from transferkit.train.plan import BatchPlan, StreamInfo


@dataclass
class TrainResult:
    """History of a finished (or early-stopped) run."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best_metric: float | None = None
    monitor: str | None = None
    stopped_early: bool = False
    resumed_from_epoch: int = 0
    seconds: float = 0.0
    samples_per_second: float = 0.0


def lr_lambda(schedule: str, total: int, warmup: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        t = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))

    return f


@dataclass
class Run:
    """What one ``fit`` works with (set up once, read by the epoch and step methods)."""

    module: TrainModule
    streams: dict[str, Sequence[Any]]
    vals: dict[str, Sequence[Any]]
    plan: BatchPlan
    info: dict[str, StreamInfo]
    collates: dict[str, Collate]
    val_collates: dict[str, Collate]
    device: torch.device
    rank: int
    world: int
    groups: list[dict[str, Any]]
    workers: int = 0
    has_unlabelled: bool = False
    steps_per_epoch: int = 0
    total: int = 0
    opt: Any = None
    sched: Any = None
    scaler: Any = None
    amp_dtype: torch.dtype | None = None
    step_module: Any = None
    fingerprint: dict[str, Any] = field(default_factory=dict)


class Tally:
    """Running sums of an epoch's logged scalars and its training accuracy, kept where the
    step's outputs are (no device synchronisation per step; read when printed)."""

    def __init__(self) -> None:
        self._sums: dict[str, Any] = {}
        self._correct: Any = 0
        self._counted: Any = 0
        self.n = 0

    def add(self, out: dict[str, Any], b: int, has_unlabelled: bool) -> None:
        self.n += b
        for k, v in out.items():
            if k in ("logits", "y"):
                continue
            if isinstance(v, torch.Tensor) and v.numel() == 1:
                x: Any = v.detach().double() * b
            else:
                x = scalar(v)
                x = None if x is None else x * b
            if x is not None:
                self._sums[k] = self._sums.get(k, 0.0) + x
        if "logits" in out and "y" in out:  # rows labelled -1 are not counted
            y = out["y"]
            self._correct = self._correct + (out["logits"].detach().argmax(1) == y).sum()
            self._counted = self._counted + (len(y) - (y < 0).sum() if has_unlabelled
                                             else len(y))

    @property
    def sums(self) -> dict[str, float]:
        """The sums as numbers."""
        return {k: float(v) for k, v in self._sums.items()}

    def accuracy(self) -> float | None:
        counted = int(self._counted)
        return int(self._correct) / counted if counted else None

    def stats(self) -> tuple[dict[str, float], int, float | None]:
        """(sums, items, accuracy) for the progress bar."""
        return self.sums, self.n, self.accuracy()


class StepModule(nn.Module):
    """Routes training_step through forward, so DDP synchronises its gradients."""

    def __init__(self, module: TrainModule, with_ctx: bool) -> None:
        super().__init__()
        self.module = module
        self.with_ctx = with_ctx

    def forward(self, batch: Any, ctx: StepContext) -> dict[str, Any]:
        if self.with_ctx:
            return self.module.training_step(batch, ctx)
        return self.module.training_step(batch)  # type: ignore[call-arg]


