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
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from transferkit.device import (
    DeviceLike,
    amp_dtype,
    default_workers,
    is_out_of_memory,
    move,
    out_of_memory_error,
    resolve_device,
)
from transferkit.errors import RunError
from transferkit.train.batches import (
    Collate,
    as_streams,
    default_collate,
    labels_of,
    lengths_of,
)
from transferkit.train.checkpoint import load_checkpoint, save_checkpoint
from transferkit.train.config import TrainConfig
from transferkit.train.data import TensorData
from transferkit.train.distributed import init_distributed
from transferkit.train.loader import epoch_batches
from transferkit.train.module import StepContext, TrainModule
from transferkit.train.plan import BatchPlan, ShufflePlan, Step, StreamInfo, mix
from transferkit.train.progress import Bar, format_row
from transferkit.train.rng import seed_everything, set_rng
from transferkit.train.state import Run, StepModule, Tally, TrainResult, lr_lambda

CHECKPOINT = "checkpoint.pt"


class Trainer:
    """Fits a TrainModule on indexable data; see the module docstring for features.

    ``checkpoint_dir`` gets ``checkpoint.pt`` after every epoch (written atomically). With
    ``resume=True`` a run continues from that file; the result equals an uninterrupted run
    with the same seed, because batch plans, augmentation and dropout are re-seeded from
    (seed, epoch) at the start of every epoch.
    """

    def __init__(self, config: TrainConfig, *, checkpoint_dir: str | Path | None = None,
                 resume: bool = False, progress: bool | None = None,
                 label: str = "train", log: Callable[[str], None] | None = None,
                 device: DeviceLike = "auto", workers: int | None = None) -> None:
        config.validate()
        self.device = device
        self.workers = workers
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
        run = self._setup(module, train, val, plan, collate, fingerprint)
        res = TrainResult(monitor=self.config.monitor)
        state = {"best_metric": None, "best_epoch": None, "bad_epochs": 0, "best_state": None}
        start = 0
        if self.resume and self.checkpoint_dir is not None:
            ck = load_checkpoint(self.checkpoint_dir / CHECKPOINT, run.fingerprint)
            if ck is not None:
                start, state = self._restore(run, ck, res)
                if ck.get("finished"):
                    return self._finish(module, res, state, time.perf_counter(), 0)
        t0 = time.perf_counter()
        if self.config.eval_start and run.vals and not res.history:
            self._score_start(run, res, state, t0)
        seen = 0
        bar = Bar(self.label, self.config.epochs, run.steps_per_epoch,
                  self._show_progress(run.rank), self.log if run.rank == 0 else None)
        try:
            for epoch in range(start, self.config.epochs):
                row = self._epoch(run, epoch, bar)
                seen += row.pop("_seen") * run.world
                stop = self._end_epoch(run, epoch, row, res, state, bar)
                if stop:
                    res.stopped_early = True
                    break
        except Exception as exc:
            if is_out_of_memory(exc):
                raise out_of_memory_error(exc, run.device, self.config.batch_size,
                                          self.label) from None
            raise
        finally:
            bar.close()
        return self._finish(module, res, state, t0, seen)

    # --- the run, an epoch, a step ------------------------------------------------------
    def _setup(self, module: TrainModule, train: Any, val: Any, plan: BatchPlan | None,
               collate: Any, fingerprint: dict[str, Any] | None) -> Run:
        """Streams, batch plan, device, optimiser and schedule of one ``fit``."""
        cfg = self.config
        streams = as_streams(train, "train")
        vals = {k: v for k, v in as_streams(val, "val").items() if len(v) > 0}
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
        rank, world = init_distributed()
        device = resolve_device(self.device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        module.to(device)
        groups = [dict(g, params=[p for p in g["params"] if p.requires_grad])
                  for g in module.param_groups()]
        groups = [g for g in groups if g["params"]]
        if sum(p.numel() for g in groups for p in g["params"]) == 0:
            raise ValueError("nothing to train: every parameter is frozen")
        run = Run(module=module, streams=streams, vals=vals, plan=plan, info=info,
                   collates={k: self._collate_of(k, d, collate) for k, d in streams.items()},
                   val_collates={k: self._collate_of(k, d, collate) for k, d in vals.items()},
                   device=device, rank=rank, world=world, groups=groups,
                   workers=(default_workers(device) if self.workers is None
                            else int(self.workers)))
        run.has_unlabelled = any(i.labels is None or bool((np.asarray(i.labels) < 0).any())
                                 for i in info.values())
        run.steps_per_epoch = len(self._steps(run, 0))
        if run.steps_per_epoch == 0:
            raise ValueError(f"the batch plan gives no step per epoch (batch size "
                             f"{cfg.batch_size}, {world} process(es))")
        self._optimise(run, module)
        run.fingerprint = {"config": asdict(cfg), "world_size": world,
                           "plan": plan.describe(), **(fingerprint or {})}
        return run

    def _optimise(self, run: Run, module: TrainModule) -> None:
        """The optimiser, schedule, precision and (several processes) DDP wrapper of a run."""
        cfg = self.config
        run.opt = self.config.optimizer_for(run.groups)
        run.total = run.steps_per_epoch * cfg.epochs
        warm = round(cfg.warmup_epochs * run.steps_per_epoch)
        if cfg.schedule == "onecycle" and warm == 0:
            warm = max(1, round(0.3 * run.total))
        run.sched = torch.optim.lr_scheduler.LambdaLR(
            run.opt, lr_lambda(cfg.schedule, run.total, warm))
        run.amp_dtype = amp_dtype(run.device, cfg.precision)
        run.scaler = (torch.amp.GradScaler(run.device.type)
                      if run.amp_dtype == torch.float16 else None)
        with_ctx = len(inspect.signature(module.training_step).parameters) >= 2
        run.step_module = StepModule(module, with_ctx)
        if run.world > 1:
            run.step_module = nn.parallel.DistributedDataParallel(
                run.step_module,
                device_ids=[run.device.index] if run.device.type == "cuda" else None)

    def _steps(self, run: Run, epoch: int) -> list[Step]:
        return run.plan.epoch(run.info, batch_size=self.config.batch_size,
                              seed=self.config.seed, epoch=epoch, rank=run.rank,
                              world=run.world)

    def _context(self, run: Run, epoch: int, step: int) -> StepContext:
        return StepContext(epoch=epoch, epochs=self.config.epochs, step=step,  # may be the end
                           steps_per_epoch=run.steps_per_epoch,
                           global_step=epoch * run.steps_per_epoch + step,
                           total_steps=run.total, rank=run.rank, world=run.world,
                           device=run.device, scaler=run.scaler)

    def _restore(self, run: Run, ck: dict[str, Any],
                 res: TrainResult) -> tuple[int, dict[str, Any]]:
        """Continue from a checkpoint: weights, optimiser, schedule, scaler, random state."""
        run.module.load_state_dict(ck["module"])
        run.opt.load_state_dict(ck["optimizer"])
        run.sched.load_state_dict(ck["scheduler"])
        if run.scaler is not None and ck.get("scaler"):
            run.scaler.load_state_dict(ck["scaler"])
        set_rng(ck["rng"])
        res.history = list(ck["history"])
        res.resumed_from_epoch = int(ck["epoch"])
        return int(ck["epoch"]), dict(ck["early_stopping"])

    def _score_start(self, run: Run, res: TrainResult, state: dict[str, Any],
                     t0: float) -> None:
        """Row 0: the starting weights scored on validation (they compete too)."""
        row0: dict[str, Any] = {"epoch": 0, "train_loss": None, "train_accuracy": None,
                                "lr": 0.0, **self.evaluate(run.module, run.vals,
                                                           collate=run.val_collates,
                                                           device=run.device)}
        row0["seconds"] = round(time.perf_counter() - t0, 3)
        res.history.append(row0)
        self._early_stopping(run.module, row0, state, -1, True)
        if self.log and run.rank == 0:
            self.log(format_row(self.label, row0, self.config.epochs))

    def _epoch(self, run: Run, epoch: int, bar: Bar) -> dict[str, Any]:
        """Train one epoch; its row (``_seen``: items this process trained on)."""
        te = time.perf_counter()
        seed_everything(mix(self.config.seed, epoch, 2))
        run.module.train()
        run.module.on_epoch_start(self._context(run, epoch, 0))
        tally = Tally()
        bar.start_epoch(epoch)
        steps = self._steps(run, epoch)
        batches = epoch_batches(steps, run.streams, run.collates, run.plan.single,
                                device=run.device, workers=run.workers,
                                seed=self.config.seed, epoch=epoch)
        for s, (step, batch) in enumerate(zip(steps, batches, strict=True)):
            out = self._step(run, batch, self._context(run, epoch, s))
            tally.add(out, sum(len(p.indices) for p in step.values()), run.has_unlabelled)
            bar.advance(tally.stats)
        sums = tally.sums
        row: dict[str, Any] = {
            "epoch": epoch + 1, "train_loss": sums.pop("loss", 0.0) / max(tally.n, 1),
            "train_accuracy": tally.accuracy(), "lr": run.opt.param_groups[0]["lr"]}
        row.update({k: v / max(tally.n, 1) for k, v in sums.items()})
        if run.vals:
            row.update(self.evaluate(run.module, run.vals, collate=run.val_collates,
                                     device=run.device))
        run.module.on_epoch_end(row, self._context(run, epoch, run.steps_per_epoch))
        row["seconds"] = round(time.perf_counter() - te, 3)
        row["_seen"] = tally.n
        return row

    def _step(self, run: Run, batch: Any, ctx: StepContext) -> dict[str, Any]:
        """One optimiser step on one batch; the step's output."""
        module, opt, scaler = run.module, run.opt, run.scaler
        with torch.autocast(run.device.type, dtype=run.amp_dtype,
                            enabled=run.amp_dtype is not None):
            out = run.step_module(batch, ctx)
        loss = out["loss"]
        if not torch.isfinite(loss):
            raise RunError(f"{self.label}: the loss became {float(loss)} at epoch "
                           f"{ctx.epoch + 1}; lower the learning rate (--lr)")
        opt.zero_grad(set_to_none=True)
        module.backward(out, ctx)
        if scaler is not None:
            scaler.unscale_(opt)
        module.on_after_backward(ctx)
        if self.config.clip_grad_norm:
            nn.utils.clip_grad_norm_([p for g in run.groups for p in g["params"]],
                                     self.config.clip_grad_norm)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        run.sched.step()
        module.on_step_end(out, ctx)
        return out

    def _end_epoch(self, run: Run, epoch: int, row: dict[str, Any], res: TrainResult,
                   state: dict[str, Any], bar: Bar) -> bool:
        """Log, keep the best, checkpoint; whether to stop early."""
        cfg = self.config
        res.history.append(row)
        stop = self._early_stopping(run.module, row, state, epoch, bool(run.vals))
        bar.end_epoch(row, cfg.monitor)
        if self.log and run.rank == 0:
            self.log(format_row(self.label, row, cfg.epochs))
        finished = stop or epoch + 1 == cfg.epochs
        if self.checkpoint_dir is not None and run.rank == 0:
            save_checkpoint(self.checkpoint_dir / CHECKPOINT, run, epoch + 1, res, state,
                            finished)
        if run.world > 1:
            torch.distributed.barrier()
        return stop

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
                idx = order[s:s + bs]
                if isinstance(d, TensorData) and fn is default_collate:
                    yield move(d.take(idx), device)
                else:
                    yield move(fn([d[i] for i in idx]), device)

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
