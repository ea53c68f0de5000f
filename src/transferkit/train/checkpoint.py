"""The Trainer's per-epoch checkpoint: written atomically, read back only with the same
settings and data (its fingerprint)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch

from transferkit._io import write_bytes_atomic
from transferkit.errors import RunError
from transferkit.train.rng import get_rng
from transferkit.train.state import Run, TrainResult


def save_checkpoint(path: Path, run: Run, epoch: int, res: TrainResult,
                    state: dict[str, Any], finished: bool) -> None:
    """Everything a resume needs after ``epoch`` epochs (weights, optimiser, schedule,
    scaler, random state, history, early stopping)."""
    ck = {"epoch": epoch, "finished": finished,
          "fingerprint": json.dumps(run.fingerprint, sort_keys=True),
          "module": run.module.state_dict(), "optimizer": run.opt.state_dict(),
          "scheduler": run.sched.state_dict(),
          "scaler": run.scaler.state_dict() if run.scaler is not None else None,
          "rng": get_rng(), "history": res.history, "early_stopping": state}
    buf = io.BytesIO()
    torch.save(ck, buf)
    write_bytes_atomic(path, buf.getvalue())


def load_checkpoint(path: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (None when there is none); a clear error when it is
    damaged or was written with other settings or data."""
    if not path.is_file():
        return None
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RunError(f"{path}: unreadable checkpoint ({exc}); delete it to start "
                       f"over") from None
    if ck.get("fingerprint") != json.dumps(fingerprint, sort_keys=True):
        raise RunError(f"{path}: this checkpoint was written with other settings or data; "
                       f"resume with the same options, or use a new output folder")
    return ck
