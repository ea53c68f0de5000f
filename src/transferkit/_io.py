"""Atomic file writes: readers never see a half-written file, a crash leaves the old one.

Files get the permissions the user's umask gives a new file (like ``open``), not the 0600 of
a temporary file, so a report can be served or shared. A write that fails (read-only
filesystem, full disk, no permission) is a ``RunError`` naming the file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from transferkit.errors import RunError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def cannot_write(path: str | Path, exc: OSError) -> RunError:
    """A RunError naming ``path`` and what the system said (e.g. read-only, disk full)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return RunError(f"{path}: cannot write ({reason}); choose another --out or free space")


def make_dir(path: str | Path) -> Path:
    """``mkdir -p``; a failure is a RunError naming the folder."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cannot_write(path, exc) from None
    return path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed over ``path`` when the block
    ends without error (with the umask's permissions), removed otherwise."""
    path = Path(path)
    make_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
        os.close(fd)
    except OSError as exc:
        raise cannot_write(path, exc) from None
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        raise cannot_write(path, exc) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write bytes to a temporary file in the same folder, fsync, then rename over ``path``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented UTF-8 JSON, atomically."""
    text = json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
    return write_bytes_atomic(path, text.encode("utf-8"))
