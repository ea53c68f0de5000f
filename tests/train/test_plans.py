"""Batch plans: what every step sees, the same for every process, every run and every resume."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from sklearn.datasets import load_digits

from transferkit.errors import DataError
from transferkit.train import (
    EpisodicPlan,
    MultiSourcePlan,
    PairedPlan,
    ShufflePlan,
    StreamInfo,
)


@pytest.fixture(scope="module")
def digit_labels() -> np.ndarray:
    return load_digits().target  # 1,797 real labels, 10 classes of 174..183 items


def test_shuffle_plan_sees_every_item_once_per_epoch_in_fresh_batches() -> None:
    plan = ShufflePlan("train")
    info = {"train": StreamInfo(100)}
    epochs = [plan.epoch(info, batch_size=32, seed=4, epoch=e) for e in range(3)]
    for steps in epochs:
        batches = [list(s["train"].indices) for s in steps]
        assert [len(b) for b in batches] == [32, 32, 32, 4]
        assert sorted(i for b in batches for i in b) == list(range(100))  # each item once
    orders = [[i for s in steps for i in s["train"].indices] for steps in epochs]
    assert orders[0] != list(range(100))  # shuffled, not in file order
    assert orders[0] != orders[1] != orders[2] != orders[0]  # a new order every epoch
    assert plan.epoch(info, batch_size=32, seed=4, epoch=1) == epochs[1]  # resume: same plan
    assert plan.epoch(info, batch_size=32, seed=5, epoch=1) != epochs[1]  # seed matters
    assert [len(s["train"].indices) for s in ShufflePlan("train", batch_size=10).epoch(
        info, batch_size=32, seed=4, epoch=0)] == [10] * 10  # the plan's own size wins
    # two processes: disjoint shares whose union is the whole batch, same number of steps
    r0 = plan.epoch(info, batch_size=32, seed=4, epoch=1, rank=0, world=2)
    r1 = plan.epoch(info, batch_size=32, seed=4, epoch=1, rank=1, world=2)
    assert len(r0) == len(r1) == 4
    for whole, a, b in zip(epochs[1], r0, r1, strict=True):
        assert not set(a["train"].indices) & set(b["train"].indices)
        assert sorted(a["train"].indices + b["train"].indices) == sorted(
            whole["train"].indices)


def test_shuffle_plan_groups_texts_by_length_yet_reshuffles() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 200, size=96).tolist()
    info = {"train": StreamInfo(96, lengths=lengths)}
    plan = ShufflePlan("train")
    steps = plan.epoch(info, batch_size=16, seed=0, epoch=0)
    batches = [list(s["train"].indices) for s in steps]
    assert sorted(i for b in batches for i in b) == list(range(96))
    # padding: each batch's longest item is close to its items' mean (sorted-ish batches)
    pad = sum(len(b) * max(lengths[i] for i in b) for b in batches) / sum(lengths)
    flat = ShufflePlan("train", group_by_length=False).epoch(info, batch_size=16, seed=0,
                                                           epoch=0)
    pad_flat = sum(len(s["train"].indices) * max(lengths[i] for i in s["train"].indices)
                   for s in flat) / sum(lengths)
    assert pad < 1.5 < pad_flat, (pad, pad_flat)
    again = plan.epoch(info, batch_size=16, seed=0, epoch=1)
    assert {frozenset(s["train"].indices) for s in again} != {frozenset(b) for b in batches}


def test_episodes_have_disjoint_support_and_query_and_local_labels(digit_labels) -> None:
    plan = EpisodicPlan("train", ways=5, shots=2, queries=3, episodes=200)
    info = {"train": StreamInfo(len(digit_labels), digit_labels)}
    steps = plan.epoch(info, batch_size=0, seed=7, epoch=0)
    assert len(steps) == 200
    for st in steps:
        sup, qry = st["support"], st["query"]
        assert len(sup.indices) == 5 * 2 and len(qry.indices) == 5 * 3  # N*K and N*Q
        assert not set(sup.indices) & set(qry.indices)
        assert len(set(sup.indices) | set(qry.indices)) == 25
        # episode-local labels 0..N-1, consistent with the items' real classes
        for part in (sup, qry):
            real = digit_labels[list(part.indices)]
            mapping = dict(zip(part.labels, real, strict=True))
            assert sorted(mapping) == list(range(5))
            assert len(set(mapping.values())) == 5
            assert all(mapping[lab] == r for lab, r in zip(part.labels, real, strict=True))
        assert dict(zip(sup.labels, digit_labels[list(sup.indices)], strict=True)) == dict(
            zip(qry.labels, digit_labels[list(qry.indices)], strict=True))
    # classes covered uniformly: 200 episodes x 5 ways = 100 per class, every class drawn
    counts = Counter(int(digit_labels[st["support"].indices[0 + 2 * k]])
                     for st in steps for k in range(5))
    assert set(counts) == set(range(10)) and max(counts.values()) - min(counts.values()) <= 2
    again = plan.epoch(info, batch_size=0, seed=7, epoch=0)
    assert again == steps  # one seed, one plan
    assert plan.epoch(info, batch_size=0, seed=7, epoch=1) != steps  # new epoch, new episodes


def test_episode_larger_than_the_data_names_the_classes(digit_labels) -> None:
    small = digit_labels[:60]  # about 6 per class
    with pytest.raises(DataError, match=r"needs 5 classes with at least 20 items.*too few"):
        EpisodicPlan(ways=5, shots=5, queries=15).epoch(
            {"train": StreamInfo(60, small)}, batch_size=0, seed=0, epoch=0)
    with pytest.raises(DataError, match="episodes need labelled data"):
        EpisodicPlan().epoch({"train": StreamInfo(60)}, batch_size=0, seed=0, epoch=0)
    with pytest.raises(ValueError, match="ways must be at least 2"):
        EpisodicPlan(ways=1)


def test_paired_plan_sees_both_streams_each_step_and_cycles_the_shorter() -> None:
    info = {"source": StreamInfo(100), "target": StreamInfo(30)}
    steps = PairedPlan(length="source").epoch(info, batch_size=16, seed=1, epoch=0)
    assert len(steps) == 7  # ceil(100 / 16)
    src = [i for st in steps for i in st["source"].indices]
    assert sorted(src) == list(range(100))  # the leading stream once
    assert all(len(st["target"].indices) == 16 for st in steps)  # the other: full batches
    tgt = Counter(i for st in steps for i in st["target"].indices)
    assert len(tgt) >= 25 and max(tgt.values()) <= 7  # 7 batches of 16 from 30 items
    assert len(PairedPlan(length="target").epoch(info, batch_size=16, seed=1, epoch=0)) == 2
    assert len(PairedPlan(length=5).epoch(info, batch_size=16, seed=1, epoch=0)) == 5
    assert len(PairedPlan(length="min").epoch(info, batch_size=16, seed=1, epoch=0)) == 2
    assert steps == PairedPlan().epoch(info, batch_size=16, seed=1, epoch=0)


def test_every_process_gets_its_own_share_of_every_stream() -> None:
    info = {"source": StreamInfo(64), "target": StreamInfo(40)}
    plan = PairedPlan()
    whole = plan.epoch(info, batch_size=16, seed=3, epoch=0)
    r0 = plan.epoch(info, batch_size=16, seed=3, epoch=0, rank=0, world=2)
    r1 = plan.epoch(info, batch_size=16, seed=3, epoch=0, rank=1, world=2)
    assert len(r0) == len(r1) == len(whole)
    for w, a, b in zip(whole, r0, r1, strict=True):
        for s in ("source", "target"):
            assert not set(a[s].indices) & set(b[s].indices)
            assert sorted(a[s].indices + b[s].indices) == sorted(w[s].indices)
    labels = np.repeat(np.arange(6), 10)
    ep = EpisodicPlan(ways=3, shots=1, queries=2, episodes=4)
    e0 = ep.epoch({"train": StreamInfo(60, labels)}, batch_size=0, seed=0, epoch=0, world=2)
    e1 = ep.epoch({"train": StreamInfo(60, labels)}, batch_size=0, seed=0, epoch=0, rank=1,
                  world=2)
    assert len(e0) == len(e1) == 4 and e0 != e1  # whole episodes, different per process


def test_multi_source_plan_interleaves_or_sums_tasks() -> None:
    info = {"fine": StreamInfo(50), "coarse": StreamInfo(50), "digits": StreamInfo(20)}
    inter = MultiSourcePlan(["fine", "coarse", "digits"]).epoch(info, batch_size=8, seed=0,
                                                                epoch=0)
    assert all(len(st) == 1 for st in inter)
    seen = {t: sorted(i for st in inter if t in st for i in st[t].indices) for t in info}
    assert all(seen[t] == list(range(info[t].size)) for t in info)  # every item once
    order = [next(iter(st)) for st in inter]
    assert order != sorted(order, key=["fine", "coarse", "digits"].index)  # mixed
    summed = MultiSourcePlan(["fine", "digits"], mode="sum").epoch(info, batch_size=8, seed=0,
                                                                    epoch=0)
    assert len(summed) == 7 and all(set(st) == {"fine", "digits"} for st in summed)
    with pytest.raises(ValueError, match="unique"):
        MultiSourcePlan(["a", "a"])
