"""`transferkit rank`: candidate backbones (and cuts after some of their stages) scored for
a labelled dataset by transferability scores, without training."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from transferkit.backbones.modality import check_modality
from transferkit.data import Dataset, Splits
from transferkit.runs.data import as_data


def rank_run(data: str | Path | Dataset | Splits, backbones: Sequence[str], *,
             scores: Sequence[str] = ("logme", "hscore", "transrate"),
             stages: Sequence[int] = (), verify: bool = False, source: bool = False,
             seed: int = 0, cache: Any = True,
             log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """One row per candidate, best first (see
    :func:`~transferkit.selection.rank.rank_backbones`); every candidate must read the
    data's modality."""
    from transferkit.selection.rank import rank_backbones

    ds = as_data(data, labelled=True)
    first = ds.train if isinstance(ds, Splits) else ds
    for name in backbones:
        check_modality(name, first.modality, first.source, option="--backbones")
    return rank_backbones(ds, list(backbones), scores=list(scores), stages=list(stages),
                          verify=verify, source=source, seed=seed, cache=cache, log=log)
