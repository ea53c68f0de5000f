"""Progress of a training run: one log line per epoch, a live bar on a terminal, and plain
lines at a steady interval elsewhere (logs, CI, nohup)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from transferkit.train import testhook

#: seconds between progress lines when the output is not a terminal (logs, nohup, CI)
PROGRESS_LINE_SECONDS = 30.0

_FIXED = ("epoch", "train_loss", "train_accuracy", "lr", "seconds", "phase")


def format_row(label: str, row: dict[str, Any], epochs: int) -> str:
    """One log line for an epoch's row (epoch 0: the starting weights, before training)."""
    parts = [f"{label} epoch {row['epoch']}/{epochs}"]
    if row.get("train_loss") is not None:
        parts.append(f"loss {row['train_loss']:.4f}")
    if row.get("train_accuracy") is not None:
        parts.append(f"acc {row['train_accuracy']:.3f}")
    if row.get("val_accuracy") is not None:
        parts.append(f"val_acc {row['val_accuracy']:.3f}")
    if row.get("val_loss") is not None:
        parts.append(f"val_loss {row['val_loss']:.4f}")
    extra = [f"{k} {v:.4g}" for k, v in row.items() if k not in _FIXED
             and k not in ("val_accuracy", "val_loss") and isinstance(v, float)]
    parts += extra
    parts.append(f"{row['seconds']:.1f}s")
    return " · ".join(parts)


class Bar:
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

    def advance(self, running: Callable[[], tuple[dict[str, float], int, float | None]]
                ) -> None:
        """One step done; ``running()`` gives (sums, items, accuracy) when they are shown
        (read only then: on a GPU, reading them waits for the device)."""
        self.step += 1
        testhook.step_done(self.label, self.epoch + 1, self.step)
        if not (self.enabled or self.lines):
            return
        now = time.perf_counter()
        if not self.enabled and (self.lines is None or
                                 now - self.t_line < PROGRESS_LINE_SECONDS):
            return
        sums, n, acc = running()
        stats = " ".join(f"{k} {v / n:.3f}" for k, v in list(sums.items())[:4])
        stats += "" if acc is None else f" acc {acc:.3f}"
        if self.enabled:
            self.bar.update(self.task, advance=1, stats=f"{stats} {self.last}")
            return
        if self.lines is not None:
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
