"""What a strategy gives the one training loop: a TrainModule (its loss, parameter groups,
validation and hooks), the StepContext each step sees, and FullPrecision for parts that
must not run in mixed precision."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from transferkit.device import resolve_device


@dataclass(frozen=True)
class StepContext:
    """Where training stands when a hook or ``training_step`` runs.

    ``epoch`` and ``step`` count from 0; ``progress`` = global_step / total_steps, in [0, 1]
    (epoch hooks see the value at the epoch's start / end). ``backward(loss)`` runs the
    backward pass with the run's loss scaling; ``autocast(False)`` runs a block in full
    precision (e.g. a second-order inner loop).
    """

    epoch: int
    epochs: int
    step: int
    steps_per_epoch: int
    global_step: int
    total_steps: int
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: resolve_device("cpu"))
    scaler: Any = field(default=None, repr=False, compare=False)

    @property
    def progress(self) -> float:
        """Training progress p in [0, 1] (e.g. for the DANN lambda ramp)."""
        return min(1.0, self.global_step / max(1, self.total_steps))

    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        """``loss.backward()``, scaled when fp16 loss scaling is on."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward(**kwargs)

    def autocast(self, enabled: bool = True) -> AbstractContextManager[Any]:
        """A context that turns mixed precision off (``enabled=False``) for a block."""
        return nullcontext() if enabled else torch.autocast(self.device.type, enabled=False)


class TrainModule(nn.Module):
    """What a strategy gives the Trainer: parameters to optimise and a loss per batch.

    Override ``training_step(batch, ctx)`` -> dict with ``loss``, optionally ``logits`` and
    ``y`` (a running train accuracy) and any named scalars (logged per epoch, e.g.
    ``domain_loss``); ``param_groups`` when layers need their own learning rates (each group
    may carry ``lr_scale``, multiplying the base lr); ``validation_step`` (batch -> (logits,
    y)) or ``validation_metrics`` for other tasks (unlabelled validation data: a label-free
    criterion). Hooks: ``on_epoch_start``, ``on_step_end``, ``on_epoch_end``, ``backward``
    and ``on_after_backward`` (gradients computed, not yet clipped or applied).
    ``frozen_modules`` stay in eval mode while the rest trains.
    """

    def frozen_modules(self) -> list[nn.Module]:
        """Sub-modules kept in eval mode during training (frozen stages, BN statistics)."""
        return list(getattr(self, "_frozen", []))

    def set_frozen_modules(self, modules: Sequence[nn.Module]) -> None:
        """Declare the sub-modules that stay in eval mode during training."""
        object.__setattr__(self, "_frozen", list(modules))  # not registered as children

    def train(self, mode: bool = True) -> TrainModule:
        """Train mode for the trainable parts; frozen modules stay in eval mode."""
        super().train(mode)
        for m in self.frozen_modules():
            m.eval()
        return self

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimiser parameter groups (default: every trainable parameter at the base lr)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def training_step(self, batch: Any, ctx: StepContext) -> dict[str, Any]:
        """Loss (and named scalars) of one training batch."""
        raise NotImplementedError(f"{type(self).__name__} must define training_step")

    def validation_step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and integer labels of one validation batch."""
        x, y = batch
        return self(x), y

    def validation_metrics(self, batches: Iterable[Any]) -> dict[str, float]:
        """Mean cross-entropy and accuracy over the labelled items of the validation batches
        (items labelled -1, i.e. unlabelled, are left out; none labelled gives {})."""
        loss_sum, correct, n = 0.0, 0, 0
        for batch in batches:
            logits, y = self.validation_step(batch)
            keep = y >= 0
            if not bool(keep.any()):
                continue
            logits, y = logits[keep].float(), y[keep]
            loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            n += len(y)
        if n == 0:
            return {}
        return {"val_loss": loss_sum / n, "val_accuracy": correct / n}

    def validate(self, streams: Mapping[str, Iterable[Any]]) -> dict[str, float]:
        """Metrics of named validation streams: one stream named ``val`` gives
        ``validation_metrics``; several are prefixed by their names (``source_val_loss``)."""
        if list(streams) == ["val"]:
            return self.validation_metrics(streams["val"])
        out: dict[str, float] = {}
        for name, batches in streams.items():
            out.update({f"{name}_{k}": v for k, v in self.validation_metrics(batches).items()})
        return out

    # --- hooks ---------------------------------------------------------------------------
    def on_epoch_start(self, ctx: StepContext) -> None:
        """Called before an epoch's first step (e.g. refresh pseudo-labels)."""

    def on_step_end(self, out: dict[str, Any], ctx: StepContext) -> None:
        """Called after each optimiser step (e.g. update an EMA teacher)."""

    def on_epoch_end(self, row: dict[str, Any], ctx: StepContext) -> None:
        """Called with the epoch's row (after validation; add keys to it to log them)."""

    def backward(self, out: dict[str, Any], ctx: StepContext) -> None:
        """Gradients of a step's output (default: of ``out["loss"]``)."""
        ctx.backward(out["loss"])

    def on_after_backward(self, ctx: StepContext) -> None:
        """Gradients are in ``.grad``: transform them here (e.g. task-gradient surgery)."""


class FullPrecision(nn.Module):
    """Runs ``inner`` in float32 with mixed precision turned off (e.g. a second-order inner
    loop, or a loss that needs the range), whatever the Trainer's precision."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        dev = next((a.device for a in [*args, *kwargs.values()] if isinstance(a, torch.Tensor)),
                   None)

        def f32(a: Any) -> Any:
            return a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a

        with torch.autocast("cpu" if dev is None else dev.type, enabled=False):
            return self.inner(*map(f32, args), **{k: f32(v) for k, v in kwargs.items()})
