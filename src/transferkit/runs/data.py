"""Reading a command's data: a path (or an in-memory dataset) as one dataset or as
train/val/test splits, with one message for an input of the wrong shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transferkit.data.dataset import Dataset, Splits
from transferkit.data.load import load_data
from transferkit.errors import DataError


def as_data(x: str | Path | Dataset | Splits | None, **read: Any) -> Dataset | Splits | None:
    """``x`` read from its path (None stays None; datasets are returned as they are)."""
    return (None if x is None else load_data(x, **read)
            if not isinstance(x, (Dataset, Splits)) else x)


def single(x: Dataset | Splits | None, what: str) -> Dataset | None:
    """``x`` itself; a DataError naming ``what`` (an option, a role, a task) for splits."""
    if isinstance(x, Splits):
        raise DataError(f"{what}: give one dataset (a folder of class folders or a CSV), "
                        f"not a folder with train/val/test")
    return x


def one_dataset(x: str | Path | Dataset | None, what: str, *, labelled: bool | None = True,
                **read: Any) -> Dataset | None:
    """One dataset read from ``x`` (None stays None) for ``what``; with ``labelled=True`` a
    dataset without labels is a DataError naming its source."""
    ds = single(as_data(x, labelled=labelled, **read), what)
    if ds is not None and labelled is True and ds.labels is None:
        raise DataError(f"{ds.source}: {what} needs labels (class folders or a label column)")
    return ds
