"""The input pipeline of feature extraction: items -> prepared batches, in order.

Preparation (decoding, resizing, tokenising) runs one batch ahead of the model: in one
helper thread (``workers`` = 0, the CPU default: the cores run the model), or in ``workers``
processes that fill pinned memory, so a GPU never waits for the CPU. Either way every batch
holds the same items in the same order, and an unreadable item is reported (or skipped)
with its origin, never silently lost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch

from transferkit.errors import DataError


@dataclass
class Prepared:
    """One prepared batch: the item indices that could be read, their model input, and the
    indices that could not (index -> message naming the item)."""

    ok: list[int]
    batch: Any
    bad: dict[int, str] = field(default_factory=dict)


@dataclass
class Pipeline:
    """How a backbone turns items into a model input batch on a device.

    ``prepare`` (one item -> tensor; DataError for an unreadable one) runs where the
    workers are; ``collate`` stacks the prepared items (on the CPU); ``to_input`` moves a
    collated batch to the device and finishes it there (e.g. resize and normalise images).
    ``tag`` names a preprocessing that differs from the backbone's own (it keys the feature
    cache, so features of two pipelines are never mixed); "" for the backbone's own.
    ``parallel``: whether ``prepare`` may run in worker processes.
    """

    prepare: Callable[[Any], Any]
    collate: Callable[[list[Any]], Any]
    to_input: Callable[[Any, torch.device], Any]
    tag: str = ""
    parallel: bool = True


def _prepare_batch(pipe: Pipeline, items: Sequence[Any], origins: Sequence[str],
                   idx: Sequence[int]) -> Prepared:
    ok, tensors, bad = [], [], {}
    for i in idx:
        try:
            tensors.append(pipe.prepare(items[i]))
            ok.append(i)
        except DataError as exc:
            msg = str(exc)
            bad[i] = msg if origins[i] in msg else f"{origins[i]}: {msg}"
    return Prepared(ok, pipe.collate(tensors) if tensors else None, bad)


class _Batches(torch.utils.data.Dataset):
    def __init__(self, pipe: Pipeline, items: Sequence[Any], origins: Sequence[str],
                 batches: list[list[int]]) -> None:
        self.pipe, self.items, self.origins, self.batches = pipe, items, origins, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, b: int) -> tuple[list[int], Any, dict[int, str]]:
        p = _prepare_batch(self.pipe, self.items, self.origins, self.batches[b])
        return p.ok, p.batch, p.bad


def prepared_batches(pipe: Pipeline, items: Sequence[Any], origins: Sequence[str],
                     batches: list[list[int]], *, workers: int = 0,
                     pin: bool = False) -> Iterator[Prepared]:
    """The prepared batches of ``batches`` (lists of item indices), in order."""
    if not batches:
        return
    if workers <= 0 or not pipe.parallel:
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(_prepare_batch, pipe, items, origins, batches[0])
            for b in range(len(batches)):
                done = pending.result()
                if b + 1 < len(batches):
                    pending = pool.submit(_prepare_batch, pipe, items, origins, batches[b + 1])
                yield done
        return
    loader = torch.utils.data.DataLoader(
        _Batches(pipe, items, origins, batches), batch_size=None, shuffle=False,
        num_workers=min(workers, len(batches)), pin_memory=pin, prefetch_factor=4,
        multiprocessing_context="fork")
    for ok, batch, bad in loader:
        yield Prepared(list(ok), batch, dict(bad))
