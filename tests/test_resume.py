"""A killed extraction loses nothing: features already computed come from the cache on re-run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

N = 192
SCRIPT = f"""
from transferkit.backbones import load_backbone
from transferkit.data import fashion_mnist_sample, from_folder
ds = from_folder(fashion_mnist_sample())
load_backbone("efficientnet_lite0").extract(ds.items[:{N}], batch_size=16)
"""


def _rows(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return int(con.execute("SELECT COUNT(*) FROM features").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def test_sigkill_mid_extraction_then_resume(tmp_path: Path, sample_dir: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], env=dict(os.environ))
    db = tmp_path / "features-v1.sqlite"
    deadline = time.time() + 120
    while _rows(db) < 32 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = _rows(db)
    assert 32 <= done_before < N, done_before  # killed part-way, after some batches

    from transferkit.backbones import FeatureCache, load_backbone
    from transferkit.data import from_folder

    items = from_folder(sample_dir).items[:N]
    feats = load_backbone("efficientnet_lite0").extract(items, cache=FeatureCache(tmp_path))
    assert feats.cache_hits == done_before
    assert feats.computed == N - done_before
    assert feats.features.shape == (N, 1280)
