"""The one training loop: every gradient-based strategy hands it a TrainModule and data.

A strategy writes a :class:`TrainModule` (its parameter groups, its loss in
``training_step``) and gets optimisers, schedules with warm-up, clipping, mixed precision on
GPUs, a live progress bar, early stopping on any validation key that restores the best
weights, atomic per-epoch checkpoints with exact resume, seeded determinism and
multi-process DDP (``torchrun``).

Data comes as one dataset or several named streams; a :class:`~transferkit.train.plan.
BatchPlan` decides what each step sees (shuffled batches, source/target pairs, episodes,
several tasks). ``training_step(batch, ctx)`` gets a :class:`StepContext` (epoch, step,
training progress) and returns the loss plus any named scalars, which are logged per epoch.
Hooks (epoch start/end, step end, backward) let a strategy keep an EMA teacher, refresh
pseudo-labels or transform gradients without a loop of its own; what they keep in the module
(parameters, buffers, ``get_extra_state``) is checkpointed, so resume stays exact.
"""

from __future__ import annotations

import inspect
import io
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from transferkit._io import write_bytes_atomic
from transferkit.errors import RunError
from transferkit.train.plan import BatchPlan, ShufflePlan, Step, StreamInfo, mix

CHECKPOINT = "checkpoint.pt"
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "onecycle", "constant")
PRECISIONS = ("auto", "32", "bf16", "16")
MODES = ("auto", "max", "min")
#: seconds between progress lines when the output is not a terminal (logs, nohup, CI)
PROGRESS_LINE_SECONDS = 30.0


@dataclass
class TrainConfig:
    """Everything that shapes a training run (also the fingerprint a resume must match).

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
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
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
                   torch.device("cpu"))

        def f32(a: Any) -> Any:
            return a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a

        with torch.autocast(dev.type, enabled=False):
            return self.inner(*map(f32, args), **{k: f32(v) for k, v in kwargs.items()})


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


Collate = Callable[[list[Any]], Any]


def default_collate(samples: list[Any]) -> Any:
    """Stack (input tensor, label) pairs into (batch tensor, label tensor)."""
    xs, ys = zip(*samples, strict=True)
    return torch.stack(list(xs)), torch.as_tensor(ys, dtype=torch.long)


# ------------------------------------------------------------------------- distribution

def dist_info() -> tuple[int, int]:
    """(rank, world size) of this process: from an initialised process group or torchrun."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _init_distributed() -> tuple[int, int]:
    rank, world = dist_info()
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend=backend)
        rank, world = dist_info()
    return rank, world


def _device() -> torch.device:
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def _lengths(data: Sequence[Any]) -> list[int] | None:
    """Per-item lengths when the data has them (``data.lengths()``: texts), else None."""
    fn = getattr(data, "lengths", None)
    return fn() if callable(fn) else None


def _labels_of(data: Sequence[Any]) -> np.ndarray | None:
    labels = getattr(data, "labels", None)
    return None if labels is None else np.asarray(labels)


def _lr_lambda(schedule: str, total: int, warmup: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        t = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))

    return f


class _Step(nn.Module):
    """Routes training_step through forward, so DDP synchronises its gradients."""

    def __init__(self, module: TrainModule, with_ctx: bool) -> None:
        super().__init__()
        self.module = module
        self.with_ctx = with_ctx

    def forward(self, batch: Any, ctx: StepContext) -> dict[str, Any]:
        if self.with_ctx:
            return self.module.training_step(batch, ctx)
        return self.module.training_step(batch)  # type: ignore[call-arg]


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch


def _as_streams(data: Sequence[Any] | Mapping[str, Sequence[Any]] | None,
                name: str) -> dict[str, Sequence[Any]]:
    if data is None:
        return {}
    if isinstance(data, Mapping):
        return dict(data)
    return {name: data}


def _scalar(v: Any) -> float | None:
    """A loggable number from a step output value (0-d tensor, int, float), else None."""
    if isinstance(v, torch.Tensor):
        return float(v.detach()) if v.numel() == 1 else None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    return None


# ------------------------------------------------------------------------------ trainer

class Trainer:
    """Fits a TrainModule on indexable data; see the module docstring for features.

    ``checkpoint_dir`` gets ``checkpoint.pt`` after every epoch (written atomically). With
    ``resume=True`` a run continues from that file; the result equals an uninterrupted run
    with the same seed, because batch plans, augmentation and dropout are re-seeded from
    (seed, epoch) at the start of every epoch.
    """

    def __init__(self, config: TrainConfig, *, checkpoint_dir: str | Path | None = None,
                 resume: bool = False, progress: bool | None = None,
                 label: str = "train", log: Callable[[str], None] | None = None) -> None:
        config.validate()
        self.config = config
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.resume = resume
        self.progress = progress
        self.label = label
        self.log = log

    # --- public --------------------------------------------------------------------------
    def fit(self, module: TrainModule,
            train: Sequence[Any] | Mapping[str, Sequence[Any]],
            val: Sequence[Any] | Mapping[str, Sequence[Any]] | None = None, *,
            plan: BatchPlan | None = None,
            collate: Collate | Mapping[str, Collate] | None = None,
            fingerprint: dict[str, Any] | None = None) -> TrainResult:
        """Train ``module`` in place.

        ``train`` is one dataset (items ``data[i]`` go through ``collate``) or named streams
        that ``plan`` draws from (default: shuffled batches of the one dataset). ``val`` (one
        dataset or named streams, labelled or not) is scored after every epoch; the value
        ``config.monitor`` picks the best epoch and drives early stopping. ``collate``
        defaults to each stream's own ``collate`` method, else stacking (x, y) pairs.
        ``fingerprint`` (JSON) is stored in the checkpoint with the config; resuming with a
        different one is refused.
        """
        cfg = self.config
        streams = _as_streams(train, "train")
        vals = _as_streams(val, "val")
        vals = {k: v for k, v in vals.items() if len(v) > 0}
        if plan is None:
            if len(streams) != 1:
                raise ValueError(f"several training streams ({', '.join(streams)}) need a "
                                 f"batch plan")
            plan = ShufflePlan(next(iter(streams)), group_by_length=cfg.group_by_length)
        if not streams or all(len(d) == 0 for d in streams.values()):
            raise ValueError("the training set is empty")
        info = {k: StreamInfo(len(d), _labels_of(d),
                              _lengths(d) if cfg.group_by_length else None)
                for k, d in streams.items()}
        plan.check(info)
        has_unlabelled = any(i.labels is None or bool((np.asarray(i.labels) < 0).any())
                             for i in info.values())
        collates = {k: self._collate_of(k, d, collate)
                    for k, d in {**streams, **vals}.items()}
        rank, world = _init_distributed()
        device = _device()
        module.to(device)
        groups = [dict(g, params=[p for p in g["params"] if p.requires_grad])
                  for g in module.param_groups()]
        groups = [g for g in groups if g["params"]]
        if sum(p.numel() for g in groups for p in g["params"]) == 0:
            raise ValueError("nothing to train: every parameter is frozen")
        opt = self._optimizer(groups)
        with_ctx = len(inspect.signature(module.training_step).parameters) >= 2

        def epoch_steps(epoch: int) -> list[Step]:
            return plan.epoch(info, batch_size=cfg.batch_size, seed=cfg.seed, epoch=epoch,
                              rank=rank, world=world)

        steps_per_epoch = len(epoch_steps(0))
        if steps_per_epoch == 0:
            raise ValueError(f"the batch plan gives no step per epoch (batch size "
                             f"{cfg.batch_size}, {world} process(es))")
        total = steps_per_epoch * cfg.epochs
        warm = round(cfg.warmup_epochs * steps_per_epoch)
        if cfg.schedule == "onecycle" and warm == 0:
            warm = max(1, round(0.3 * total))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg.schedule, total, warm))
        amp_dtype = self._amp_dtype(device)
        scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
        step_module: nn.Module = _Step(module, with_ctx)
        if world > 1:
            step_module = nn.parallel.DistributedDataParallel(
                step_module, device_ids=[device.index] if device.type == "cuda" else None)

        def context(epoch: int, step: int) -> StepContext:
            return StepContext(epoch=epoch, epochs=cfg.epochs, step=step,  # step may be the end
                               steps_per_epoch=steps_per_epoch,
                               global_step=epoch * steps_per_epoch + step, total_steps=total,
                               rank=rank, world=world, device=device, scaler=scaler)

        res = TrainResult(monitor=cfg.monitor)
        state = {"best_metric": None, "best_epoch": None, "bad_epochs": 0, "best_state": None}
        fp = {"config": asdict(cfg), "world_size": world, "plan": plan.describe(),
              **(fingerprint or {})}
        start = 0
        if self.resume and self.checkpoint_dir is not None:
            ck = self._load_checkpoint(fp)
            if ck is not None:
                module.load_state_dict(ck["module"])
                opt.load_state_dict(ck["optimizer"])
                sched.load_state_dict(ck["scheduler"])
                if scaler is not None and ck.get("scaler"):
                    scaler.load_state_dict(ck["scaler"])
                _set_rng(ck["rng"])
                start = int(ck["epoch"])
                res.history = list(ck["history"])
                state = dict(ck["early_stopping"])
                res.resumed_from_epoch = start
                if ck.get("finished"):
                    return self._finish(module, res, state, time.perf_counter(), 0)
        t0 = time.perf_counter()
        seen = 0
        bar = _Bar(self.label, cfg.epochs, steps_per_epoch, self._show_progress(rank),
                   self.log if rank == 0 else None)
        try:
            for epoch in range(start, cfg.epochs):
                te = time.perf_counter()
                _seed_everything(mix(cfg.seed, epoch, 2))
                module.train()
                module.on_epoch_start(context(epoch, 0))
                sums: dict[str, float] = {}
                correct, counted, n_seen = 0, 0, 0
                bar.start_epoch(epoch)
                for s, step in enumerate(epoch_steps(epoch)):
                    ctx = context(epoch, s)
                    batch = _to(self._batch(step, streams, collates, plan.single), device)
                    with torch.autocast(device.type, dtype=amp_dtype,
                                        enabled=amp_dtype is not None):
                        out = step_module(batch, ctx)
                    loss = out["loss"]
                    if not torch.isfinite(loss):
                        raise RunError(f"{self.label}: the loss became {float(loss)} at epoch "
                                       f"{epoch + 1}; lower the learning rate (--lr)")
                    opt.zero_grad(set_to_none=True)
                    module.backward(out, ctx)
                    if scaler is not None:
                        scaler.unscale_(opt)
                    module.on_after_backward(ctx)
                    if cfg.clip_grad_norm:
                        nn.utils.clip_grad_norm_(
                            [p for g in groups for p in g["params"]], cfg.clip_grad_norm)
                    if scaler is not None:
                        scaler.step(opt)
                        scaler.update()
                    else:
                        opt.step()
                    sched.step()
                    module.on_step_end(out, ctx)
                    b = sum(len(p.indices) for p in step.values())
                    n_seen += b
                    for k, v in out.items():
                        x = _scalar(v) if k not in ("logits", "y") else None
                        if x is not None:
                            sums[k] = sums.get(k, 0.0) + x * b
                    if "logits" in out and "y" in out:  # rows labelled -1 are not counted
                        y = out["y"]
                        correct += int((out["logits"].detach().argmax(1) == y).sum())
                        counted += len(y) - int((y < 0).sum()) if has_unlabelled else len(y)
                    bar.advance(sums, n_seen, correct / counted if counted else None)
                seen += n_seen * world
                row: dict[str, Any] = {
                    "epoch": epoch + 1, "train_loss": sums.pop("loss", 0.0) / max(n_seen, 1),
                    "train_accuracy": correct / counted if counted else None,
                    "lr": opt.param_groups[0]["lr"]}
                row.update({k: v / max(n_seen, 1) for k, v in sums.items()})
                if vals:
                    row.update(self.evaluate(module, vals, collate=collates, device=device))
                module.on_epoch_end(row, context(epoch, steps_per_epoch))
                row["seconds"] = round(time.perf_counter() - te, 3)
                res.history.append(row)
                stop = self._early_stopping(module, row, state, epoch, bool(vals))
                bar.end_epoch(row, cfg.monitor)
                if self.log and rank == 0:
                    self.log(_format_row(self.label, row, cfg.epochs))
                finished = stop or epoch + 1 == cfg.epochs
                if self.checkpoint_dir is not None and rank == 0:
                    self._save_checkpoint(module, opt, sched, scaler, epoch + 1, res, state, fp,
                                          finished)
                if world > 1:
                    torch.distributed.barrier()
                if stop:
                    res.stopped_early = True
                    break
        finally:
            bar.close()
        return self._finish(module, res, state, t0, seen)

    def evaluate(self, module: TrainModule,
                 data: Sequence[Any] | Mapping[str, Sequence[Any]], *,
                 collate: Collate | Mapping[str, Collate] | None = None,
                 device: torch.device | None = None) -> dict[str, float]:
        """Validation metrics of ``module`` on one dataset or named streams (eval mode, no
        gradients)."""
        device = device or next(module.parameters()).device
        streams = _as_streams(data, "val")
        was = module.training
        module.eval()
        bs = max(self.config.batch_size, 64)

        def batches(d: Sequence[Any], fn: Collate) -> Iterator[Any]:
            lengths = _lengths(d)  # order does not change the metrics; sorted pads less
            order = (sorted(range(len(d)), key=lambda i: lengths[i]) if lengths is not None
                     else list(range(len(d))))
            for s in range(0, len(d), bs):
                yield _to(fn([d[i] for i in order[s:s + bs]]), device)

        with torch.no_grad():
            metrics = module.validate({k: batches(d, self._collate_of(k, d, collate))
                                       for k, d in streams.items()})
        module.train(was)
        return metrics

    # --- internals ---------------------------------------------------------------------
    @staticmethod
    def _collate_of(name: str, data: Sequence[Any],
                    collate: Collate | Mapping[str, Collate] | None) -> Collate:
        if isinstance(collate, Mapping):
            collate = collate.get(name)
        if collate is not None:
            return collate
        return getattr(data, "collate", default_collate)

    @staticmethod
    def _batch(step: Step, streams: Mapping[str, Sequence[Any]],
               collates: Mapping[str, Collate], single: bool) -> Any:
        out = {}
        for name, part in step.items():
            data = streams[part.stream]
            samples = [data[i] for i in part.indices]
            if part.labels is not None:  # episode-local labels
                samples = [(s[0], lab) for s, lab in zip(samples, part.labels, strict=True)]
            out[name] = collates[part.stream](samples)
        return next(iter(out.values())) if single else out

    def _optimizer(self, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        cfg = self.config
        pg = []
        for g in groups:
            g = dict(g)
            scale = float(g.pop("lr_scale", 1.0))
            g.setdefault("lr", cfg.lr * scale)
            pg.append(g)
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(pg, lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                                   weight_decay=cfg.weight_decay)
        return torch.optim.AdamW(pg, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def _amp_dtype(self, device: torch.device) -> torch.dtype | None:
        p = self.config.precision
        if p == "32" or (p == "auto" and device.type != "cuda"):
            return None
        if p == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if p == "bf16" else torch.float16

    def _show_progress(self, rank: int) -> bool:
        if rank != 0:
            return False
        return sys.stderr.isatty() if self.progress is None else bool(self.progress)

    def _early_stopping(self, module: TrainModule, row: dict[str, Any], state: dict[str, Any],
                        epoch: int, has_val: bool) -> bool:
        cfg = self.config
        metric = row.get(cfg.monitor)
        if metric is None:
            if has_val:
                keys = sorted(k for k, v in row.items() if isinstance(v, float)
                              and k not in ("lr", "seconds"))
                raise RunError(f"{self.label}: monitor {cfg.monitor!r} is not among the values "
                               f"of an epoch ({', '.join(keys)}); set the monitor to one of them")
            return False
        if state["best_metric"] is None:
            better = True
        elif cfg.larger_is_better():
            better = metric > state["best_metric"]
        else:
            better = metric < state["best_metric"]
        if better:
            state.update(best_metric=float(metric), best_epoch=epoch + 1, bad_epochs=0)
            if cfg.restore_best:
                state["best_state"] = {k: v.detach().clone()
                                       for k, v in module.state_dict().items()}
            return False
        state["bad_epochs"] += 1
        return cfg.patience is not None and state["bad_epochs"] >= cfg.patience

    def _finish(self, module: TrainModule, res: TrainResult, state: dict[str, Any], t0: float,
                seen: int) -> TrainResult:
        if self.config.restore_best and state.get("best_state") is not None:
            module.load_state_dict(state["best_state"])
        res.best_epoch = state.get("best_epoch")
        res.best_metric = state.get("best_metric")
        res.seconds = time.perf_counter() - t0
        res.samples_per_second = seen / res.seconds if res.seconds > 0 else 0.0
        module.eval()
        return res

    def _save_checkpoint(self, module: TrainModule, opt: torch.optim.Optimizer,
                         sched: Any, scaler: Any, epoch: int, res: TrainResult,
                         state: dict[str, Any], fp: dict[str, Any], finished: bool) -> None:
        assert self.checkpoint_dir is not None
        ck = {"epoch": epoch, "finished": finished, "fingerprint": json.dumps(fp, sort_keys=True),
              "module": module.state_dict(), "optimizer": opt.state_dict(),
              "scheduler": sched.state_dict(),
              "scaler": scaler.state_dict() if scaler is not None else None,
              "rng": _get_rng(), "history": res.history, "early_stopping": state}
        buf = io.BytesIO()
        torch.save(ck, buf)
        write_bytes_atomic(self.checkpoint_dir / CHECKPOINT, buf.getvalue())

    def _load_checkpoint(self, fp: dict[str, Any]) -> dict[str, Any] | None:
        assert self.checkpoint_dir is not None
        path = self.checkpoint_dir / CHECKPOINT
        if not path.is_file():
            return None
        try:
            ck = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise RunError(f"{path}: unreadable checkpoint ({exc}); delete it to start "
                           f"over") from None
        if ck.get("fingerprint") != json.dumps(fp, sort_keys=True):
            raise RunError(f"{path}: this checkpoint was written with other settings or data; "
                           f"resume with the same options, or use a new output folder")
        return ck


def _get_rng() -> dict[str, Any]:
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    st: dict[str, Any] = {"torch": torch.get_rng_state(),
                          "numpy": json.dumps([keys.tolist(), pos, has_gauss, gauss]),
                          "python": json.dumps(random.getstate())}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    keys, pos, has_gauss, gauss = json.loads(st["numpy"])
    np.random.set_state(("MT19937", np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    py = json.loads(st["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))
    if torch.cuda.is_available() and "cuda" in st:
        torch.cuda.set_rng_state_all(st["cuda"])


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


_FIXED = ("epoch", "train_loss", "train_accuracy", "lr", "seconds", "phase")


def _format_row(label: str, row: dict[str, Any], epochs: int) -> str:
    parts = [f"{label} epoch {row['epoch']}/{epochs}", f"loss {row['train_loss']:.4f}"]
    if row.get("train_accuracy") is not None:
        parts.append(f"acc {row['train_accuracy']:.3f}")
    if row.get("val_accuracy") is not None:
        parts.append(f"val_acc {row['val_accuracy']:.3f} val_loss {row['val_loss']:.4f}")
    extra = [f"{k} {v:.4g}" for k, v in row.items() if k not in _FIXED
             and k not in ("val_accuracy", "val_loss") and isinstance(v, float)]
    parts += extra
    parts.append(f"{row['seconds']:.1f}s")
    return " · ".join(parts)


class _Bar:
    """Live progress: a rich bar on a terminal; elsewhere (logs, CI, nohup) a plain line every
    ``PROGRESS_LINE_SECONDS`` through ``log``, so a slow run can be told from a hung one."""

    def __init__(self, label: str, epochs: int, steps: int, enabled: bool,
                 log: Callable[[str], None] | None = None) -> None:
        self.epochs, self.steps, self.label = epochs, steps, label
        self.enabled = enabled and sys.stderr.isatty()
        self.lines = log if enabled and not self.enabled else None
        self.last = ""
        self.step = 0
        self.epoch = 0
        self.t0 = self.t_line = time.perf_counter()
        if not self.enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(TextColumn("[bold]{task.description}", markup=False),
                            BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[stats]}", markup=False),
                            TimeRemainingColumn(), console=Console(stderr=True), transient=True)
        self.task = self.bar.add_task(label, total=steps, stats="")
        self.bar.start()

    def start_epoch(self, epoch: int) -> None:
        self.epoch, self.step = epoch, 0
        if self.enabled:
            self.bar.reset(self.task, total=self.steps,
                           description=f"{self.label} {epoch + 1}/{self.epochs}",
                           stats=self.last)

    def advance(self, sums: dict[str, float], n: int, acc: float | None) -> None:
        self.step += 1
        if not (self.enabled or self.lines):
            return
        stats = " ".join(f"{k} {v / n:.3f}" for k, v in list(sums.items())[:4])
        stats += "" if acc is None else f" acc {acc:.3f}"
        if self.enabled:
            self.bar.update(self.task, advance=1, stats=f"{stats} {self.last}")
            return
        now = time.perf_counter()
        if self.lines is not None and now - self.t_line >= PROGRESS_LINE_SECONDS:
            self.t_line = now
            self.lines(f"{self.label} epoch {self.epoch + 1}/{self.epochs}: step "
                       f"{self.step}/{self.steps}, {stats} ({now - self.t0:.0f} s)")

    def end_epoch(self, row: dict[str, Any], monitor: str) -> None:
        self.t_line = time.perf_counter()  # the epoch's own log line just went out
        if self.enabled and isinstance(row.get(monitor), float):
            self.last = f"| {monitor} {row[monitor]:.3f}"

    def close(self) -> None:
        if self.enabled:
            self.bar.stop()
