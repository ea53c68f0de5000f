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
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from transferkit._io import write_bytes_atomic
from transferkit.errors import RunError
from transferkit.train.batches import (
    Collate,
    as_streams,
    default_collate,
    labels_of,
    lengths_of,
    scalar,
    to_device,
)
from transferkit.train.config import TrainConfig
from transferkit.train.distributed import device_of_process, init_distributed
from transferkit.train.module import StepContext, TrainModule
from transferkit.train.plan import BatchPlan, ShufflePlan, Step, StreamInfo, mix
from transferkit.train.progress import Bar, format_row
from transferkit.train.rng import get_rng, seed_everything, set_rng

CHECKPOINT = "checkpoint.pt"


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
        streams = as_streams(train, "train")
        vals = as_streams(val, "val")
        vals = {k: v for k, v in vals.items() if len(v) > 0}
        if plan is None:
            if len(streams) != 1:
                raise ValueError(f"several training streams ({', '.join(streams)}) need a "
                                 f"batch plan")
            plan = ShufflePlan(next(iter(streams)), group_by_length=cfg.group_by_length)
        if not streams or all(len(d) == 0 for d in streams.values()):
            raise ValueError("the training set is empty")
        info = {k: StreamInfo(len(d), labels_of(d),
                              lengths_of(d) if cfg.group_by_length else None)
                for k, d in streams.items()}
        plan.check(info)
        has_unlabelled = any(i.labels is None or bool((np.asarray(i.labels) < 0).any())
                             for i in info.values())
        # train and validation streams may share a name (a source stream, its validation)
        collates = {k: self._collate_of(k, d, collate) for k, d in streams.items()}
        val_collates = {k: self._collate_of(k, d, collate) for k, d in vals.items()}
        rank, world = init_distributed()
        device = device_of_process()
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
                set_rng(ck["rng"])
                start = int(ck["epoch"])
                res.history = list(ck["history"])
                state = dict(ck["early_stopping"])
                res.resumed_from_epoch = start
                if ck.get("finished"):
                    return self._finish(module, res, state, time.perf_counter(), 0)
        t0 = time.perf_counter()
        if cfg.eval_start and vals and not res.history:  # the starting weights compete too
            row0: dict[str, Any] = {"epoch": 0, "train_loss": None, "train_accuracy": None,
                                    "lr": 0.0, **self.evaluate(module, vals, collate=val_collates,
                                                               device=device)}
            row0["seconds"] = round(time.perf_counter() - t0, 3)
            res.history.append(row0)
            self._early_stopping(module, row0, state, -1, True)
            if self.log and rank == 0:
                self.log(format_row(self.label, row0, cfg.epochs))
        seen = 0
        bar = Bar(self.label, cfg.epochs, steps_per_epoch, self._show_progress(rank),
                   self.log if rank == 0 else None)
        try:
            for epoch in range(start, cfg.epochs):
                te = time.perf_counter()
                seed_everything(mix(cfg.seed, epoch, 2))
                module.train()
                module.on_epoch_start(context(epoch, 0))
                sums: dict[str, float] = {}
                correct, counted, n_seen = 0, 0, 0
                bar.start_epoch(epoch)
                for s, step in enumerate(epoch_steps(epoch)):
                    ctx = context(epoch, s)
                    batch = to_device(self._batch(step, streams, collates, plan.single), device)
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
                        x = scalar(v) if k not in ("logits", "y") else None
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
                    row.update(self.evaluate(module, vals, collate=val_collates,
                                             device=device))
                module.on_epoch_end(row, context(epoch, steps_per_epoch))
                row["seconds"] = round(time.perf_counter() - te, 3)
                res.history.append(row)
                stop = self._early_stopping(module, row, state, epoch, bool(vals))
                bar.end_epoch(row, cfg.monitor)
                if self.log and rank == 0:
                    self.log(format_row(self.label, row, cfg.epochs))
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
        streams = as_streams(data, "val")
        was = module.training
        module.eval()
        bs = max(self.config.batch_size, 64)

        def batches(d: Sequence[Any], fn: Collate) -> Iterator[Any]:
            lengths = lengths_of(d)  # order does not change the metrics; sorted pads less
            order = (sorted(range(len(d)), key=lambda i: lengths[i]) if lengths is not None
                     else list(range(len(d))))
            for s in range(0, len(d), bs):
                yield to_device(fn([d[i] for i in order[s:s + bs]]), device)

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
              "rng": get_rng(), "history": res.history, "early_stopping": state}
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


