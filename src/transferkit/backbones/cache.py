"""On-disk feature cache: one SQLite file, rows keyed by (backbone key, item content hash)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np


def default_cache_dir() -> Path:
    """``$TRANSFERKIT_CACHE`` if set, else ``$XDG_CACHE_HOME/transferkit`` or ``~/.cache/...``."""
    env = os.environ.get("TRANSFERKIT_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "transferkit"


class FeatureCache:
    """Pooled features stored as float32 blobs; safe across processes (SQLite WAL)."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / "features-v1.sqlite"
        self.hits = 0
        self.misses = 0
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("CREATE TABLE IF NOT EXISTS features (backbone TEXT NOT NULL, "
                        "item TEXT NOT NULL, dim INTEGER NOT NULL, data BLOB NOT NULL, "
                        "PRIMARY KEY (backbone, item)) WITHOUT ROWID")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def get_many(self, backbone_key: str, item_keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached features among ``item_keys`` (missing keys are absent from the result)."""
        out: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(item_keys))
        with self._connect() as con:
            for start in range(0, len(unique), 500):
                chunk = unique[start:start + 500]
                marks = ",".join("?" * len(chunk))
                rows = con.execute(
                    f"SELECT item, dim, data FROM features WHERE backbone=? AND item IN ({marks})",
                    [backbone_key, *chunk])
                for item, dim, data in rows:
                    out[item] = np.frombuffer(data, dtype=np.float32, count=dim)
        self.hits += sum(1 for k in item_keys if k in out)
        self.misses += sum(1 for k in item_keys if k not in out)
        return out

    def put_many(self, backbone_key: str, pairs: Iterable[tuple[str, np.ndarray]]) -> None:
        """Store features for item keys (one transaction)."""
        rows = [(backbone_key, k, int(v.size), np.ascontiguousarray(v, np.float32).tobytes())
                for k, v in pairs]
        with self._connect() as con:
            con.executemany("INSERT OR REPLACE INTO features VALUES (?, ?, ?, ?)", rows)

    def count(self, backbone_key: str | None = None) -> int:
        """Number of cached rows (for one backbone key, or all)."""
        with self._connect() as con:
            if backbone_key is None:
                return int(con.execute("SELECT COUNT(*) FROM features").fetchone()[0])
            return int(con.execute("SELECT COUNT(*) FROM features WHERE backbone=?",
                                   (backbone_key,)).fetchone()[0])
