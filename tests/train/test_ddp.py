"""Two CPU processes (gloo, launched by torchrun) match one process with the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).with_name("_ddp_script.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_available() or
                    not torch.distributed.is_gloo_available(), reason="no gloo backend")
def test_two_process_ddp_matches_single_process(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    single, multi = tmp_path / "single.json", tmp_path / "ddp.json"
    subprocess.run([sys.executable, str(SCRIPT), str(single)], env=env, check=True,
                   timeout=120)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                    "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
                    str(SCRIPT), str(multi)], env=env, check=True, timeout=180,
                   capture_output=True)
    a, b = json.loads(single.read_text()), json.loads(multi.read_text())
    assert (a["world"], b["world"]) == (1, 2)
    diff = np.abs(np.asarray(a["weights"]) - np.asarray(b["weights"])).max()
    assert diff < 1e-4, diff
    assert a["history"][-1]["val_accuracy"] > 0.7  # chance is 0.1
    assert abs(a["history"][-1]["val_accuracy"] - b["history"][-1]["val_accuracy"]) <= 0.01
