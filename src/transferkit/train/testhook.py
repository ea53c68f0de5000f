"""A test hook: a training process that kills itself at a chosen step, so a test can check
that ``--resume`` after a SIGKILL gives the run an uninterrupted one would have given,
without racing a kill against a running process.

``TRANSFERKIT_TEST_KILL_AT="EPOCH:STEP"`` (both counted from 1) sends SIGKILL to the process
right after step STEP of epoch EPOCH has updated the weights; ``"LABEL@EPOCH:STEP"`` only in
the Trainer whose progress label is LABEL (e.g. ``dann@2:3``). Unset (always, outside tests),
the hook is one dictionary look-up per step.
"""

from __future__ import annotations

import os
import signal

#: the environment variable naming the step at which the process kills itself
KILL_AT = "TRANSFERKIT_TEST_KILL_AT"


def parse_kill_at(value: str) -> tuple[str | None, int, int]:
    """``(label or None, epoch, step)`` from ``"[LABEL@]EPOCH:STEP"``; ValueError otherwise."""
    label, _, where = value.rpartition("@")
    epoch, sep, step = where.partition(":")
    if not sep or not epoch.isdigit() or not step.isdigit() or int(epoch) < 1 or int(step) < 1:
        raise ValueError(f"{KILL_AT}={value!r}: expected [LABEL@]EPOCH:STEP, both from 1")
    return label or None, int(epoch), int(step)


def step_done(label: str, epoch: int, step: int) -> None:
    """Called after every training step (``epoch`` and ``step`` counted from 1): SIGKILLs
    this process when ``TRANSFERKIT_TEST_KILL_AT`` names this step."""
    value = os.environ.get(KILL_AT)
    if not value:
        return
    want_label, want_epoch, want_step = parse_kill_at(value)
    if (want_epoch, want_step) == (epoch, step) and want_label in (None, label):
        os.kill(os.getpid(), signal.SIGKILL)
