"""Test hooks: a training process that kills itself, or pauses, at a chosen step, so a test
can check what ``--resume`` after a SIGKILL, or a Ctrl-C, does to a run, without racing a
signal against a running process.

``TRANSFERKIT_TEST_KILL_AT="EPOCH:STEP"`` (both counted from 1) sends SIGKILL to the process
right after step STEP of epoch EPOCH has updated the weights; ``"LABEL@EPOCH:STEP"`` only in
the Trainer whose progress label is LABEL (e.g. ``dann@2:3``).
``TRANSFERKIT_TEST_PAUSE_AT`` (same form) sleeps there for ``PAUSE_SECONDS`` instead: a
signal sent meanwhile (SIGINT: Ctrl-C) arrives mid-training, whatever the machine's speed.
Unset (always, outside tests), the hooks are two dictionary look-ups per step.
"""

from __future__ import annotations

import os
import signal
import time

#: the environment variable naming the step at which the process kills itself
KILL_AT = "TRANSFERKIT_TEST_KILL_AT"
#: the environment variable naming the step at which the process pauses
PAUSE_AT = "TRANSFERKIT_TEST_PAUSE_AT"
PAUSE_SECONDS = 120.0


def parse_step(value: str, var: str = KILL_AT) -> tuple[str | None, int, int]:
    """``(label or None, epoch, step)`` from ``"[LABEL@]EPOCH:STEP"``; ValueError otherwise."""
    label, _, where = value.rpartition("@")
    epoch, sep, step = where.partition(":")
    if not sep or not epoch.isdigit() or not step.isdigit() or int(epoch) < 1 or int(step) < 1:
        raise ValueError(f"{var}={value!r}: expected [LABEL@]EPOCH:STEP, both from 1")
    return label or None, int(epoch), int(step)


def _named(var: str, label: str, epoch: int, step: int) -> bool:
    """Whether the environment variable ``var`` names this step."""
    value = os.environ.get(var)
    if not value:
        return False
    want_label, want_epoch, want_step = parse_step(value, var)
    return (want_epoch, want_step) == (epoch, step) and want_label in (None, label)


def step_done(label: str, epoch: int, step: int) -> None:
    """Called after every training step (``epoch`` and ``step`` counted from 1): SIGKILLs
    this process, or pauses it, when a hook's variable names this step."""
    if _named(KILL_AT, label, epoch, step):
        os.kill(os.getpid(), signal.SIGKILL)
    if _named(PAUSE_AT, label, epoch, step):
        time.sleep(PAUSE_SECONDS)  # a SIGINT meanwhile raises KeyboardInterrupt here
