"""The one training loop: every gradient-based strategy hands it a TrainModule and data.

A strategy writes a :class:`TrainModule` (its parameter groups, its loss in
``training_step``) and gets optimisers, schedules with warm-up, clipping, mixed precision on
GPUs, a live progress bar, early stopping that restores the best weights, atomic per-epoch
checkpoints with exact resume, seeded determinism and multi-process DDP (``torchrun``).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from transferkit._io import write_bytes_atomic
from transferkit.errors import RunError

CHECKPOINT = "checkpoint.pt"
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "onecycle", "constant")
PRECISIONS = ("auto", "32", "bf16", "16")


@dataclass
class TrainConfig:
    """Everything that shapes a training run (also the fingerprint a resume must match)."""

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
        if self.monitor not in ("val_accuracy", "val_loss"):
            raise ValueError(f"monitor {self.monitor!r}: choose val_accuracy or val_loss")
        if self.warmup_epochs < 0 or self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs must be within 0..epochs, got {self.warmup_epochs}")


class TrainModule(nn.Module):
    """What a strategy gives the Trainer: parameters to optimise and a loss per batch.

    Override ``training_step`` (batch -> dict with ``loss`` and optionally ``logits`` and
    ``y`` for a running train accuracy); ``param_groups`` when layers need their own learning
    rates (each group may carry ``lr_scale``, multiplying the base lr); ``validation_step``
    (batch -> (logits, y)) or ``validation_metrics`` for non-classification tasks.
    """

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimiser parameter groups (default: every trainable parameter at the base lr)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def training_step(self, batch: Any) -> dict[str, torch.Tensor]:
        """Loss of one training batch."""
        raise NotImplementedError

    def validation_step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and integer labels of one validation batch."""
        x, y = batch
        return self(x), y

    def validation_metrics(self, batches: Iterator[Any]) -> dict[str, float]:
        """Mean cross-entropy and accuracy over the validation batches."""
        loss_sum, correct, n = 0.0, 0, 0
        for batch in batches:
            logits, y = self.validation_step(batch)
            logits = logits.float()
            loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            n += len(y)
        return {"val_loss": loss_sum / max(n, 1), "val_accuracy": correct / max(n, 1)}


@dataclass
class TrainResult:
    """History of a finished (or early-stopped) run."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best_metric: float | None = None
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


def global_batches(n: int, batch_size: int, seed: int, epoch: int,
                   lengths: Sequence[int] | None = None) -> list[list[int]]:
    """The shuffled index batches of one epoch: the same for every process and every resume.

    With ``lengths`` (tokens per text item), items are sorted by length times a random factor
    in [0.75, 1.25) before batching and the batches are shuffled: a batch pads to a length
    close to its items' own (about 1.3x the real tokens instead of 2.3x on WordNet glosses)
    while batch membership still changes every epoch.
    """
    g = torch.Generator().manual_seed(_mix(seed, epoch, 1))
    if lengths is None:
        order = torch.randperm(n, generator=g).tolist()
        return [order[s:s + batch_size] for s in range(0, n, batch_size)]
    if len(lengths) != n:
        raise ValueError(f"lengths has {len(lengths)} entries for {n} items")
    keys = torch.as_tensor(lengths, dtype=torch.float64) * (0.75 + 0.5 * torch.rand(
        n, generator=g, dtype=torch.float64))
    order = torch.argsort(keys, stable=True).tolist()
    batches = [order[s:s + batch_size] for s in range(0, n, batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]


def _lengths(data: Sequence[Any]) -> list[int] | None:
    """Per-item lengths when the data has them (``data.lengths()``: texts), else None."""
    fn = getattr(data, "lengths", None)
    return fn() if callable(fn) else None


def _mix(*parts: int) -> int:
    h = hashlib.blake2b(",".join(map(str, parts)).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little") & 0x7FFF_FFFF_FFFF_FFFF


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

    def __init__(self, module: TrainModule) -> None:
        super().__init__()
        self.module = module

    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        return self.module.training_step(batch)


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch


# ------------------------------------------------------------------------------ trainer

class Trainer:
    """Fits a TrainModule on an indexable dataset; see the module docstring for features.

    ``checkpoint_dir`` gets ``checkpoint.pt`` after every epoch (written atomically). With
    ``resume=True`` a run continues from that file; the result equals an uninterrupted run
    with the same seed, because batch order, augmentation and dropout are re-seeded from
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
    def fit(self, module: TrainModule, train: Sequence[Any], val: Sequence[Any] | None = None,
            *, collate: Collate = default_collate, fingerprint: dict[str, Any] | None = None
            ) -> TrainResult:
        """Train ``module`` in place on ``train`` (items ``dataset[i]`` go through ``collate``).

        ``val`` drives early stopping and best-weight restoring. ``fingerprint`` (JSON) is
        stored in the checkpoint with the config; resuming with a different one is refused.
        """
        cfg = self.config
        if len(train) == 0:
            raise ValueError("the training set is empty")
        rank, world = _init_distributed()
        device = _device()
        module.to(device)
        groups = [dict(g, params=[p for p in g["params"] if p.requires_grad])
                  for g in module.param_groups()]
        groups = [g for g in groups if g["params"]]
        n_params = sum(p.numel() for g in groups for p in g["params"])
        if n_params == 0:
            raise ValueError("nothing to train: every parameter is frozen")
        opt = self._optimizer(groups)
        lengths = _lengths(train) if cfg.group_by_length else None
        steps_per_epoch = len(global_batches(len(train), cfg.batch_size, cfg.seed, 0))
        total = steps_per_epoch * cfg.epochs
        warm = round(cfg.warmup_epochs * steps_per_epoch)
        if cfg.schedule == "onecycle" and warm == 0:
            warm = max(1, round(0.3 * total))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg.schedule, total, warm))
        amp_dtype = self._amp_dtype(device)
        scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
        step_module: nn.Module = _Step(module)
        if world > 1:
            step_module = nn.parallel.DistributedDataParallel(
                step_module, device_ids=[device.index] if device.type == "cuda" else None)

        res = TrainResult()
        state = {"best_metric": None, "best_epoch": None, "bad_epochs": 0, "best_state": None}
        fp = {"config": asdict(cfg), "world_size": world, **(fingerprint or {})}
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
                    return self._finish(module, res, state, time.perf_counter(), 0, device)
        t0 = time.perf_counter()
        seen = 0
        bar = _Bar(self.label, cfg.epochs, steps_per_epoch, self._show_progress(rank))
        try:
            for epoch in range(start, cfg.epochs):
                te = time.perf_counter()
                _seed_everything(_mix(cfg.seed, epoch, 2))
                module.train()
                loss_sum, correct, counted, n_seen = 0.0, 0, 0, 0
                bar.start_epoch(epoch)
                for batch_idx in global_batches(len(train), cfg.batch_size, cfg.seed, epoch,
                                                lengths):
                    if len(batch_idx) < world:
                        continue  # a trailing batch too small to give every process a sample
                    mine = batch_idx[rank::world]
                    batch = _to(collate([train[i] for i in mine]), device)
                    with torch.autocast(device.type, dtype=amp_dtype,
                                        enabled=amp_dtype is not None):
                        out = step_module(batch)
                    loss = out["loss"]
                    if not torch.isfinite(loss):
                        raise RunError(f"{self.label}: the loss became {float(loss)} at epoch "
                                       f"{epoch + 1}; lower the learning rate (--lr)")
                    opt.zero_grad(set_to_none=True)
                    if scaler is not None:
                        scaler.scale(loss).backward()
                        scaler.unscale_(opt)
                    else:
                        loss.backward()
                    if cfg.clip_grad_norm:
                        nn.utils.clip_grad_norm_(
                            [p for g in groups for p in g["params"]], cfg.clip_grad_norm)
                    if scaler is not None:
                        scaler.step(opt)
                        scaler.update()
                    else:
                        opt.step()
                    sched.step()
                    b = len(mine)
                    n_seen += b
                    loss_sum += float(loss.detach()) * b
                    if "logits" in out and "y" in out:
                        correct += int((out["logits"].detach().argmax(1) == out["y"]).sum())
                        counted += b
                    bar.advance(loss_sum / n_seen, correct / counted if counted else None)
                seen += n_seen * world
                row: dict[str, Any] = {
                    "epoch": epoch + 1, "train_loss": loss_sum / max(n_seen, 1),
                    "train_accuracy": correct / counted if counted else None,
                    "lr": opt.param_groups[0]["lr"]}
                if val is not None and len(val) > 0:
                    row.update(self.evaluate(module, val, collate=collate, device=device))
                row["seconds"] = round(time.perf_counter() - te, 3)
                res.history.append(row)
                stop = self._early_stopping(module, row, state, epoch)
                bar.end_epoch(row)
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
        return self._finish(module, res, state, t0, seen, device)

    def evaluate(self, module: TrainModule, data: Sequence[Any], *,
                 collate: Collate = default_collate,
                 device: torch.device | None = None) -> dict[str, float]:
        """Validation metrics of ``module`` on ``data`` (eval mode, no gradients)."""
        device = device or next(module.parameters()).device
        was = module.training
        module.eval()
        bs = max(self.config.batch_size, 64)
        lengths = _lengths(data)  # order does not change the metrics; sorted pads less
        order = (sorted(range(len(data)), key=lambda i: lengths[i]) if lengths is not None
                 else list(range(len(data))))

        def batches() -> Iterator[Any]:
            for s in range(0, len(data), bs):
                yield _to(collate([data[i] for i in order[s:s + bs]]), device)

        with torch.no_grad():
            metrics = module.validation_metrics(batches())
        module.train(was)
        return metrics

    # --- internals ---------------------------------------------------------------------
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
                        epoch: int) -> bool:
        cfg = self.config
        metric = row.get(cfg.monitor)
        if metric is None:
            return False
        better = (state["best_metric"] is None or
                  (metric > state["best_metric"] if cfg.monitor == "val_accuracy"
                   else metric < state["best_metric"]))
        if better:
            state.update(best_metric=float(metric), best_epoch=epoch + 1, bad_epochs=0)
            if cfg.restore_best:
                state["best_state"] = {k: v.detach().clone()
                                       for k, v in module.state_dict().items()}
            return False
        state["bad_epochs"] += 1
        return cfg.patience is not None and state["bad_epochs"] >= cfg.patience

    def _finish(self, module: TrainModule, res: TrainResult, state: dict[str, Any], t0: float,
                seen: int, device: torch.device) -> TrainResult:
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


def _format_row(label: str, row: dict[str, Any], epochs: int) -> str:
    parts = [f"{label} epoch {row['epoch']}/{epochs}", f"loss {row['train_loss']:.4f}"]
    if row.get("train_accuracy") is not None:
        parts.append(f"acc {row['train_accuracy']:.3f}")
    if row.get("val_accuracy") is not None:
        parts.append(f"val_acc {row['val_accuracy']:.3f} val_loss {row['val_loss']:.4f}")
    parts.append(f"{row['seconds']:.1f}s")
    return " · ".join(parts)


class _Bar:
    """A rich progress bar with the live loss and accuracy (silent when disabled)."""

    def __init__(self, label: str, epochs: int, steps: int, enabled: bool) -> None:
        self.enabled = enabled
        self.epochs, self.steps = epochs, steps
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                            MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                            TimeRemainingColumn(), console=Console(stderr=True), transient=True)
        self.task = self.bar.add_task(label, total=steps, stats="")
        self.label = label
        self.last = ""
        self.bar.start()

    def start_epoch(self, epoch: int) -> None:
        if self.enabled:
            self.bar.reset(self.task, total=self.steps,
                           description=f"{self.label} {epoch + 1}/{self.epochs}",
                           stats=self.last)

    def advance(self, loss: float, acc: float | None) -> None:
        if self.enabled:
            stats = f"loss {loss:.3f}" + ("" if acc is None else f" acc {acc:.3f}")
            self.bar.update(self.task, advance=1, stats=f"{stats} {self.last}")

    def end_epoch(self, row: dict[str, Any]) -> None:
        if self.enabled and row.get("val_accuracy") is not None:
            self.last = f"| val_acc {row['val_accuracy']:.3f}"

    def close(self) -> None:
        if self.enabled:
            self.bar.stop()
