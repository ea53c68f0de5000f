"""A killed extraction loses nothing: features already computed come from the cache on re-run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

N = 192
# the extraction kills itself right after its third batch of 16 reached the cache: a fixed
# point, never a race between a sleeping test and a running process
SCRIPT = f"""
import os, signal
from transferkit.backbones import FeatureCache, load_backbone
from transferkit.data import fashion_mnist_sample, from_folder
put_many, calls = FeatureCache.put_many, []
def put_then_die(self, *args, **kwargs):
    put_many(self, *args, **kwargs)
    calls.append(1)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
FeatureCache.put_many = put_then_die
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
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=dict(os.environ), timeout=300)
    assert proc.returncode == -signal.SIGKILL
    done_before = _rows(tmp_path / "features-v1.sqlite")
    assert done_before == 48  # three batches of 16 were written before the kill

    from transferkit.backbones import FeatureCache, load_backbone
    from transferkit.data import from_folder

    items = from_folder(sample_dir).items[:N]
    feats = load_backbone("efficientnet_lite0").extract(items, cache=FeatureCache(tmp_path))
    assert feats.cache_hits == done_before
    assert feats.computed == N - done_before
    assert feats.features.shape == (N, 1280)
