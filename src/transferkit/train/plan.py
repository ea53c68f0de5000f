"""Batch plans: what each training step sees, drawn from one or several named data streams.

A plan turns (seed, epoch) into the steps of that epoch. A step maps each *part* of the batch
to the stream it is drawn from and the item indices (episodes also give episode-local labels).
Plans are pure functions of (seed, epoch, rank, world): every process computes the same global
plan and takes its own share, and a resumed run sees exactly the batches it would have seen.

- :class:`ShufflePlan`: one stream, shuffled batches (length-grouped for texts) — the default.
- :class:`PairedPlan`: every step a batch from ``source`` and a batch from ``target``; the
  epoch's length is set by one stream (or a step count) and the other stream cycles.
- :class:`EpisodicPlan`: N-way K-shot episodes (support + queries), labels re-indexed 0..N-1.
- :class:`MultiSourcePlan`: several tasks' datasets, interleaved (one task per step) or summed
  (every task in every step).
"""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from transferkit.errors import DataError


@dataclass(frozen=True)
class Part:
    """One part of a step: items ``indices`` of stream ``stream`` (``labels`` override the
    items' own labels, e.g. episode-local class indices)."""

    stream: str
    indices: tuple[int, ...]
    labels: tuple[int, ...] | None = None


Step = dict[str, Part]


@dataclass(frozen=True)
class StreamInfo:
    """What a plan may know of a stream: its size, its labels and (texts) item lengths."""

    size: int
    labels: np.ndarray | None = None
    lengths: Sequence[int] | None = None


def mix(*parts: int | str) -> int:
    """A 63-bit seed from several integers/strings (stable across processes and runs)."""
    h = hashlib.blake2b(",".join(map(str, parts)).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little") & 0x7FFF_FFFF_FFFF_FFFF


def global_batches(n: int, batch_size: int, seed: int, epoch: int,
                   lengths: Sequence[int] | None = None) -> list[list[int]]:
    """The shuffled index batches of one epoch: the same for every process and every resume.

    With ``lengths`` (tokens per text item), items are sorted by length times a random factor
    in [0.75, 1.25) before batching and the batches are shuffled: a batch pads to a length
    close to its items' own (about 1.3x the real tokens instead of 2.3x on WordNet glosses)
    while batch membership still changes every epoch.
    """
    g = torch.Generator().manual_seed(mix(seed, epoch, 1))
    if lengths is None:
        order = torch.randperm(n, generator=g).tolist()
        return [order[s:s + batch_size] for s in range(0, n, batch_size)]
    if len(lengths) != n:
        raise ValueError(f"lengths has {len(lengths)} entries for {n} items")
    keys = torch.as_tensor(lengths, dtype=torch.float64) * (0.75 + 0.5 * torch.rand(
        n, generator=g, dtype=torch.float64))
    order = torch.argsort(keys, stable=True).tolist()
    batches = [order[s:s + batch_size] for s in range(0, n, batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]


def _cycled(n: int, batch_size: int, steps: int, *seed: int | str) -> list[list[int]]:
    """``steps`` full batches of distinct items: each seeded permutation of range(n) gives
    n // batch_size batches (its remainder waits for a later permutation), then the next."""
    out: list[list[int]] = []
    cycle = 0
    while len(out) < steps:
        g = torch.Generator().manual_seed(mix(*seed, cycle))
        perm = torch.randperm(n, generator=g).tolist()
        out += [perm[s:s + batch_size] for s in range(0, n - batch_size + 1, batch_size)]
        cycle += 1
    return out[:steps]


def _share(steps: list[Step], rank: int, world: int) -> list[Step]:
    """Each process's share of every part (indices[rank::world]); steps too small for every
    process to get an item of every part are left out on all processes alike."""
    if world == 1:
        return steps
    out = []
    for st in steps:
        if any(len(p.indices) < world for p in st.values()):
            continue
        out.append({k: Part(p.stream, p.indices[rank::world],
                            None if p.labels is None else p.labels[rank::world])
                    for k, p in st.items()})
    return out


class BatchPlan(ABC):
    """Decides which items of which streams each step of an epoch sees."""

    #: True when the module's batch is the single part's batch itself (not a dict of parts)
    single: bool = False

    @property
    @abstractmethod
    def streams(self) -> tuple[str, ...]:
        """The names of the streams the plan draws from."""

    @abstractmethod
    def epoch(self, info: Mapping[str, StreamInfo], *, batch_size: int, seed: int, epoch: int,
              rank: int = 0, world: int = 1) -> list[Step]:
        """This process's steps of ``epoch``."""

    def describe(self) -> dict[str, Any]:
        """JSON description (part of a checkpoint's fingerprint)."""
        return {"plan": type(self).__name__, **{k: v for k, v in vars(self).items()
                                                if not k.startswith("_")}}

    def check(self, info: Mapping[str, StreamInfo]) -> None:
        """Raise ``DataError`` naming a stream the plan needs and the data lacks (or empty)."""
        for s in self.streams:
            if s not in info:
                raise DataError(f"the batch plan draws from stream {s!r}, but the data has "
                                f"{', '.join(map(repr, info)) or 'no streams'}")
            if info[s].size == 0:
                raise DataError(f"stream {s!r} is empty")


class ShufflePlan(BatchPlan):
    """One stream, reshuffled every epoch (texts: batches of similar lengths)."""

    single = True

    def __init__(self, stream: str = "train", batch_size: int | None = None,
                 group_by_length: bool = True) -> None:
        self.stream = stream
        self.batch_size = batch_size
        self.group_by_length = group_by_length

    @property
    def streams(self) -> tuple[str, ...]:
        return (self.stream,)

    def epoch(self, info: Mapping[str, StreamInfo], *, batch_size: int, seed: int, epoch: int,
              rank: int = 0, world: int = 1) -> list[Step]:
        s = info[self.stream]
        lengths = s.lengths if self.group_by_length else None
        batches = global_batches(s.size, self.batch_size or batch_size, seed, epoch, lengths)
        return _share([{self.stream: Part(self.stream, tuple(b))} for b in batches], rank, world)


class PairedPlan(BatchPlan):
    """Each step: a batch from ``source`` and a batch from ``target`` (e.g. labelled source,
    unlabelled target). ``length`` sets the epoch: ``"source"``/``"target"`` (that stream is
    seen once, the other cycles), ``"max"``, ``"min"`` or a number of steps. ``extra``
    streams (e.g. a few labelled target items) add a batch of their own to every step,
    cycling like the shorter stream."""

    def __init__(self, source: str = "source", target: str = "target",
                 length: str | int = "source", batch_size: int | None = None,
                 target_batch_size: int | None = None, extra: Sequence[str] = ()) -> None:
        if isinstance(length, str) and length not in ("source", "target", "max", "min"):
            raise ValueError(f"length {length!r}: choose source, target, max, min or a number "
                             f"of steps")
        if isinstance(length, int) and length < 1:
            raise ValueError(f"length must be at least 1 step, got {length}")
        if source == target:
            raise ValueError(f"source and target must be different streams, both are "
                             f"{source!r}")
        if set(extra) & {source, target} or len(set(extra)) != len(extra):
            raise ValueError(f"extra streams {list(extra)} must differ from each other and "
                             f"from {source!r} and {target!r}")
        self.source, self.target = source, target
        self.extra = list(extra)
        self.length = length
        self.batch_size = batch_size
        self.target_batch_size = target_batch_size

    @property
    def streams(self) -> tuple[str, ...]:
        return (self.source, self.target, *self.extra)

    def epoch(self, info: Mapping[str, StreamInfo], *, batch_size: int, seed: int, epoch: int,
              rank: int = 0, world: int = 1) -> list[Step]:
        bs = {self.source: self.batch_size or batch_size,
              self.target: self.target_batch_size or self.batch_size or batch_size}
        bs.update({s: self.batch_size or batch_size for s in self.extra})
        n_batches = {s: math.ceil(info[s].size / bs[s]) for s in (self.source, self.target)}
        if isinstance(self.length, int):
            steps, lead = self.length, None
        elif self.length in ("source", "target"):
            lead = self.source if self.length == "source" else self.target
            steps = n_batches[lead]
        else:
            pick = max if self.length == "max" else min
            lead = pick((self.source, self.target),
                        key=lambda s: (n_batches[s], s == self.source))
            steps = n_batches[lead]
        parts: dict[str, list[list[int]]] = {}
        for j, s in enumerate(self.streams):
            n = info[s].size
            if s == lead:  # seen once, the last batch may be smaller
                parts[s] = global_batches(n, bs[s], mix(seed, j), epoch)
            else:  # cycles: full batches from successive permutations
                parts[s] = _cycled(n, min(bs[s], n), steps, seed, epoch, j, "cycle")
        plan = [{s: Part(s, tuple(parts[s][i])) for s in self.streams} for i in range(steps)]
        return _share(plan, rank, world)


class EpisodicPlan(BatchPlan):
    """N-way K-shot episodes from one labelled stream: ``ways`` classes, ``shots`` support and
    ``queries`` query items per class, support and query disjoint, labels re-indexed 0..N-1
    in the order the classes were drawn. Classes are drawn from a stream of seeded class
    permutations, so over many episodes every class appears almost equally often.

    The module's batch is ``{"support": (x, y), "query": (x, y)}``. With several processes,
    each process gets its own episodes.
    """

    def __init__(self, stream: str = "train", ways: int = 5, shots: int = 1,
                 queries: int = 15, episodes: int = 100) -> None:
        for name, v, lo in (("ways", ways, 2), ("shots", shots, 1), ("queries", queries, 1),
                            ("episodes", episodes, 1)):
            if int(v) < lo:
                raise ValueError(f"{name} must be at least {lo}, got {v}")
        self.stream = stream
        self.ways, self.shots, self.queries = int(ways), int(shots), int(queries)
        self.episodes = int(episodes)

    @property
    def streams(self) -> tuple[str, ...]:
        return (self.stream,)

    def eligible(self, labels: np.ndarray, names: Sequence[str] | None = None) -> list[int]:
        """The classes with enough items for one episode; a clear error when too few (naming
        the classes by ``names`` when given)."""
        counts = np.bincount(labels[labels >= 0]) if len(labels) else np.zeros(0, int)
        need = self.shots + self.queries
        ok = [c for c, n in enumerate(counts) if n >= need]
        if len(ok) < self.ways:
            def name(c: int) -> str:
                return repr(names[c]) if names is not None and c < len(names) else f"class {c}"

            short = ", ".join(f"{name(c)}: {n}" for c, n in enumerate(counts) if 0 < n < need)
            raise DataError(f"a {self.ways}-way {self.shots}-shot episode with {self.queries} "
                            f"queries needs {self.ways} classes with at least {need} items each;"
                            f" {len(ok)} have enough" + (f" (too few: {short})" if short else ""))
        return ok

    def sample(self, labels: np.ndarray, seed: int, epoch: int, count: int,
               names: Sequence[str] | None = None) -> list[Step]:
        """``count`` episodes (support/query parts) seeded by (seed, epoch, episode index)."""
        classes = self.eligible(labels, names)
        by_class = {c: np.flatnonzero(labels == c) for c in classes}
        # class order: successive permutations, ``ways`` distinct classes per episode
        g = np.random.default_rng(mix(seed, epoch, "classes"))
        queue: list[int] = []
        out: list[Step] = []
        for e in range(count):
            chosen: list[int] = []
            while len(chosen) < self.ways:
                if not queue:
                    queue = g.permutation(classes).tolist()
                c = next((c for c in queue if c not in chosen), None)
                if c is None:  # the rest of the queue repeats chosen classes: refill
                    queue = queue + g.permutation(classes).tolist()
                    continue
                queue.remove(c)
                chosen.append(c)
            r = np.random.default_rng(mix(seed, epoch, e, "items"))
            sup: list[int] = []
            qry: list[int] = []
            for c in chosen:
                pick = r.choice(by_class[c], self.shots + self.queries, replace=False)
                sup.extend(int(i) for i in pick[:self.shots])
                qry.extend(int(i) for i in pick[self.shots:])
            local_s = tuple(k for k in range(self.ways) for _ in range(self.shots))
            local_q = tuple(k for k in range(self.ways) for _ in range(self.queries))
            out.append({"support": Part(self.stream, tuple(sup), local_s),
                        "query": Part(self.stream, tuple(qry), local_q)})
        return out

    def epoch(self, info: Mapping[str, StreamInfo], *, batch_size: int, seed: int, epoch: int,
              rank: int = 0, world: int = 1) -> list[Step]:
        labels = info[self.stream].labels
        if labels is None:
            raise DataError(f"episodes need labelled data; stream {self.stream!r} has no labels")
        every = self.sample(np.asarray(labels), seed, epoch, self.episodes * world)
        return every[rank::world]


class MultiSourcePlan(BatchPlan):
    """Several tasks' datasets in one epoch. ``mode="interleave"``: each step is one task's
    batch, every item of every task once per epoch, tasks mixed in a seeded order.
    ``mode="sum"``: each step holds a batch of every task (the shorter tasks cycle; the
    epoch is as long as the longest task). The module's batch is ``{task: (x, y)}``."""

    def __init__(self, tasks: Sequence[str], mode: str = "interleave",
                 batch_size: int | None = None) -> None:
        if mode not in ("interleave", "sum"):
            raise ValueError(f"mode {mode!r}: choose interleave or sum")
        if not tasks:
            raise ValueError("a multi-source plan needs at least one task")
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"task names must be unique, got {list(tasks)}")
        self.tasks = list(tasks)
        self.mode = mode
        self.batch_size = batch_size

    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(self.tasks)

    def epoch(self, info: Mapping[str, StreamInfo], *, batch_size: int, seed: int, epoch: int,
              rank: int = 0, world: int = 1) -> list[Step]:
        bs = self.batch_size or batch_size
        if self.mode == "sum":
            steps = max(math.ceil(info[t].size / bs) for t in self.tasks)
            parts = {t: _cycled(info[t].size, min(bs, info[t].size), steps, seed, epoch, j, t)
                     for j, t in enumerate(self.tasks)}
            plan = [{t: Part(t, tuple(parts[t][i])) for t in self.tasks} for i in range(steps)]
            return _share(plan, rank, world)
        plan = []
        for j, t in enumerate(self.tasks):
            s = info[t]
            plan += [{t: Part(t, tuple(b))} for b in global_batches(
                s.size, bs, mix(seed, j, t), epoch, s.lengths)]
        g = torch.Generator().manual_seed(mix(seed, epoch, "interleave"))
        plan = [plan[i] for i in torch.randperm(len(plan), generator=g).tolist()]
        return _share(plan, rank, world)
