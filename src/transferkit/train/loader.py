"""Feeding the Trainer: the batches of an epoch's steps, on the run's device.

With ``workers`` = 0 each batch is assembled in this process when its step comes (the CPU
default: results identical to a loop without workers). With workers, batches are assembled
(decoded, augmented, collated) in that many processes, pinned, and the next batch is copied
to the device while this one computes. Each worker-built batch draws its random augmentation
from a seed of its own (run seed, epoch, step), so the batches are the same whatever the
number of workers. Precomputed tensors (cached activations) are sliced in place, never sent
through workers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

from transferkit.device import move
from transferkit.train.batches import Collate, default_collate
from transferkit.train.data import TensorData, Weighted
from transferkit.train.plan import Step, mix
from transferkit.train.rng import seed_everything


def assemble(step: Step, streams: Mapping[str, Sequence[Any]],
             collates: Mapping[str, Collate], single: bool) -> Any:
    """The batch of one step: each part's items collated by its stream (tensor data sliced)."""
    out = {}
    for name, part in step.items():
        data = streams[part.stream]
        fn = collates[part.stream]
        if isinstance(data, TensorData) and part.labels is None and fn is default_collate:
            out[name] = data.take(part.indices)
            continue
        samples = [data[i] for i in part.indices]
        if part.labels is not None:  # episode-local labels
            samples = [(s[0], lab) for s, lab in zip(samples, part.labels, strict=True)]
        out[name] = fn(samples)
    return next(iter(out.values())) if single else out


def _precomputed(data: Any) -> bool:
    if isinstance(data, Weighted):
        data = data.data
    return isinstance(data, TensorData)


class _StepBatches(torch.utils.data.Dataset):
    """Step s of an epoch -> its batch, re-seeded per step (same batch in any worker)."""

    def __init__(self, steps: list[Step], streams: Mapping[str, Sequence[Any]],
                 collates: Mapping[str, Collate], single: bool, seed: int, epoch: int) -> None:
        self.steps, self.streams, self.collates = steps, streams, collates
        self.single, self.seed, self.epoch = single, seed, epoch

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, s: int) -> Any:
        seed_everything(mix(self.seed, self.epoch, s, "batch"))
        return assemble(self.steps[s], self.streams, self.collates, self.single)


def epoch_batches(steps: list[Step], streams: Mapping[str, Sequence[Any]],
                  collates: Mapping[str, Collate], single: bool, *, device: torch.device,
                  workers: int, seed: int, epoch: int) -> Iterator[Any]:
    """The batches of an epoch's steps, in order, on ``device`` (see the module docstring)."""
    if workers <= 0 or all(_precomputed(d) for d in streams.values()):
        for step in steps:
            yield move(assemble(step, streams, collates, single), device)
        return
    loader = torch.utils.data.DataLoader(
        _StepBatches(steps, streams, collates, single, seed, epoch), batch_size=None,
        shuffle=False, num_workers=workers, pin_memory=device.type == "cuda",
        prefetch_factor=4, multiprocessing_context="fork")
    it = iter(loader)
    ahead = next(it, None)
    ahead = None if ahead is None else move(ahead, device)
    while ahead is not None:
        current = ahead
        nxt = next(it, None)
        ahead = None if nxt is None else move(nxt, device)  # copied while this one computes
        yield current
