"""The Trainer's seams, each with a real consumer on real digits: two streams per step, exact
resume after SIGKILL, episodes, a label-free monitor, hooks with state, gradient hooks and
full precision inside mixed precision."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from transferkit.train import (
    EpisodicPlan,
    FullPrecision,
    TensorData,
    TrainConfig,
    Trainer,
    TrainModule,
)
from transferkit.train.testhook import KILL_AT

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from _two_stream import MeanMatch, digit_domains, run  # noqa: E402

SCRIPT = HERE / "_two_stream.py"


def test_two_streams_every_step_and_logged_components(tmp_path: Path) -> None:
    res = run(tmp_path, epochs=3, resume=False)
    steps_per_epoch = 25  # 800 source digits in batches of 32
    assert res["steps"] == res["both_streams"] == 3 * steps_per_epoch
    last = res["history"][-1]
    for key in ("cls_loss", "align_loss", "lambda", "source_val_accuracy"):
        assert key in last, key
    assert res["history"][0]["lambda"] < last["lambda"] <= 1.0  # follows training progress
    assert last["source_val_accuracy"] > 0.85  # chance is 0.1
    assert res["best_epoch"] == 1 + int(np.argmax([r["source_val_accuracy"]
                                                   for r in res["history"]]))


def test_mean_matching_moves_target_features_towards_the_source(tmp_path: Path) -> None:
    d = digit_domains()

    def gap(weight: float) -> float:
        module = MeanMatch(weight)
        from transferkit.train import PairedPlan

        Trainer(TrainConfig(epochs=3, batch_size=32, lr=3e-3, seed=0), progress=False).fit(
            module, {"source": d["source"], "target": d["target"]}, plan=PairedPlan())
        with torch.no_grad():
            return float(((module.body(d["source"].x).mean(0)
                           - module.body(d["target"].x).mean(0)) ** 2).sum())

    assert gap(5.0) < 0.3 * gap(0.0)


def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    whole.mkdir()
    broken.mkdir()
    subprocess.run([sys.executable, str(SCRIPT), str(whole), "4"], env=env, check=True,
                   timeout=300)
    # the process kills itself after step 12 of 25 in epoch 2 (a deterministic point)
    proc = subprocess.run([sys.executable, str(SCRIPT), str(broken), "4"],
                          env={**env, KILL_AT: "2:12"}, timeout=300)
    assert proc.returncode == -signal.SIGKILL
    done = torch.load(broken / "ck" / "checkpoint.pt", weights_only=True)
    assert done["epoch"] == 1 and not done["finished"]
    assert not (broken / "result.json").exists()
    subprocess.run([sys.executable, str(SCRIPT), str(broken), "4", "--resume"], env=env,
                   check=True, timeout=300)
    a = json.loads((whole / "result.json").read_text())
    b = json.loads((broken / "result.json").read_text())
    assert a["history"] == b["history"]
    assert a["weights"] == b["weights"]  # bit for bit
    # the best epoch's weights and buffers are restored: 25 steps per epoch, both streams in each
    assert a["steps"] == b["steps"] == a["both_streams"] == 25 * a["best_epoch"]


# ------------------------------------------------------------------------------ episodes

class ProtoNet(TrainModule):
    """Prototypes of the support embeddings; queries scored by squared distance."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32))

    def episode_logits(self, support, query, ways: int) -> torch.Tensor:
        (xs, ys), (xq, _) = support, query
        zs, zq = self.embed(xs), self.embed(xq)
        protos = torch.stack([zs[ys == k].mean(0) for k in range(ways)])
        return -torch.cdist(zq, protos) ** 2

    def training_step(self, batch, ctx):
        (_, ys), (_, yq) = batch["support"], batch["query"]
        assert set(ys.tolist()) == set(yq.tolist()) == set(range(5))  # local labels
        logits = self.episode_logits(batch["support"], batch["query"], 5)
        return {"loss": nn.functional.cross_entropy(logits, yq), "logits": logits, "y": yq}


def test_episodic_training_learns_from_episodes() -> None:
    """ProtoNet-style training on episodes of 1,200 digits; 5-way 1-shot episodes of the 597
    other digits: far better than the same network untrained (and than raw pixels)."""
    from transferkit.train import StreamInfo

    x, y = load_digits(return_X_y=True)
    x = torch.as_tensor(x / 16.0, dtype=torch.float32)
    held = TensorData(x[1200:], y[1200:])
    test_plan = EpisodicPlan("held", ways=5, shots=1, queries=10, episodes=50)
    episodes = test_plan.epoch({"held": StreamInfo(len(held), y[1200:])}, batch_size=0,
                               seed=1, epoch=0)

    def accuracy(net: ProtoNet) -> float:
        accs = []
        for st in episodes:
            def part(p):
                return held.x[list(p.indices)], torch.as_tensor(p.labels)
            with torch.no_grad():
                logits = net.episode_logits(part(st["support"]), part(st["query"]), 5)
            accs.append(float((logits.argmax(1) == part(st["query"])[1]).float().mean()))
        return float(np.mean(accs))

    untrained = accuracy(ProtoNet())
    net = ProtoNet()
    plan = EpisodicPlan("train", ways=5, shots=3, queries=5, episodes=40)
    res = Trainer(TrainConfig(epochs=3, lr=3e-3, seed=0), progress=False).fit(
        net, {"train": TensorData(x[:1200], y[:1200])}, plan=plan)
    assert res.history[-1]["train_accuracy"] > 0.85
    assert accuracy(net) > max(0.78, untrained + 0.1), (accuracy(net), untrained)


# ------------------------------------------------------------------ label-free selection

class Classifier(TrainModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, ctx):
        x, y = batch
        logits = self(x)
        return {"loss": nn.functional.cross_entropy(logits, y), "logits": logits, "y": y}


class EntropyMonitored(Classifier):
    """Validation on unlabelled data: the mean entropy of the predictions (no labels read)."""

    def validation_metrics(self, batches):
        ent, n = 0.0, 0
        for x, y in batches:
            assert bool((y < 0).all())  # the validation data has no labels
            p = self(x).softmax(1)
            ent += float(-(p * p.clamp_min(1e-12).log()).sum())
            n += len(x)
        return {"val_entropy": ent / n}


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    x = torch.as_tensor(x / 16.0, dtype=torch.float32)
    return TensorData(x[:1200], y[:1200]), TensorData(x[1200:], None)


def test_label_free_monitor_picks_the_epoch_its_criterion_ranks_best(digits) -> None:
    for mode, pick in (("max", np.argmax), ("min", np.argmin)):
        net = EntropyMonitored()
        trainer = Trainer(TrainConfig(epochs=5, batch_size=64, lr=3e-3, seed=0,
                                      monitor="val_entropy", mode=mode), progress=False)
        res = trainer.fit(net, *digits)
        values = [r["val_entropy"] for r in res.history]
        assert res.best_epoch == 1 + int(pick(values)), (mode, values)
        assert len(set(np.round(values, 6))) == 5  # the criterion really moved
        again = trainer.evaluate(net, digits[1])["val_entropy"]  # restored weights
        assert again == pytest.approx(res.best_metric, rel=1e-6)
    assert values[-1] < values[0]  # entropy falls as the classifier trains


# ------------------------------------------------------------------------ stateful hooks

class WithTeacher(Classifier):
    """An EMA teacher updated after every step; its update count is extra state."""

    def __init__(self, fail_at_epoch: int | None = None) -> None:
        super().__init__()
        self.teacher = copy.deepcopy(self.net).requires_grad_(False)
        self.updates = 0
        self.fail_at_epoch = fail_at_epoch

    def on_epoch_start(self, ctx) -> None:
        if ctx.epoch == self.fail_at_epoch:
            raise KeyboardInterrupt("killed")

    def on_step_end(self, out, ctx) -> None:
        with torch.no_grad():
            for t, s in zip(self.teacher.parameters(), self.net.parameters(), strict=True):
                t.mul_(0.9).add_(s, alpha=0.1)
        self.updates += 1

    def get_extra_state(self):
        return {"updates": self.updates}

    def set_extra_state(self, state) -> None:
        self.updates = int(state["updates"])


def test_hook_state_survives_resume_exactly(digits, tmp_path: Path) -> None:
    cfg = TrainConfig(epochs=4, batch_size=64, lr=3e-3, seed=0)
    whole = WithTeacher()
    Trainer(cfg, checkpoint_dir=tmp_path / "a", progress=False).fit(whole, digits[0])
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, checkpoint_dir=tmp_path / "b", progress=False).fit(
            WithTeacher(fail_at_epoch=2), digits[0])
    resumed = WithTeacher()
    res = Trainer(cfg, checkpoint_dir=tmp_path / "b", resume=True, progress=False).fit(
        resumed, digits[0])
    assert res.resumed_from_epoch == 2
    assert resumed.updates == whole.updates == 4 * 19  # 1,200 digits / 64 per step
    for a, b in zip(whole.teacher.parameters(), resumed.teacher.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(whole.teacher[0].weight, whole.net[0].weight)  # a real EMA


class FrozenBias(Classifier):
    def on_after_backward(self, ctx) -> None:
        self.net[2].bias.grad.zero_()  # a gradient transform between backward and step


def test_gradient_hook_runs_between_backward_and_step(digits) -> None:
    net = FrozenBias()
    bias = net.net[2].bias.detach().clone()
    weight = net.net[2].weight.detach().clone()
    Trainer(TrainConfig(epochs=1, batch_size=64, lr=3e-3, weight_decay=0.0),
            progress=False).fit(net, digits[0])
    assert torch.equal(net.net[2].bias, bias)
    assert not torch.equal(net.net[2].weight, weight)


def test_full_precision_inside_mixed_precision(digits) -> None:
    seen: list[torch.dtype] = []

    class Mixed(Classifier):
        def __init__(self) -> None:
            super().__init__()
            self.exact = FullPrecision(nn.Linear(10, 10))

        def training_step(self, batch, ctx):
            x, y = batch
            logits = self(x)
            seen.append(logits.dtype)
            out = self.exact(logits)
            seen.append(out.dtype)
            return {"loss": nn.functional.cross_entropy(out, y)}

    Trainer(TrainConfig(epochs=1, batch_size=600, lr=1e-3, precision="bf16"),
            progress=False).fit(Mixed(), digits[0])
    assert seen[:2] == [torch.bfloat16, torch.float32]


def test_the_kill_hook_reads_its_setting_strictly() -> None:
    from transferkit.train.testhook import parse_step

    assert parse_step("2:12") == (None, 2, 12)
    assert parse_step("dann@3:1") == ("dann", 3, 1)
    for bad in ("2", "0:1", "a:b", "2:-1", "x@"):
        with pytest.raises(ValueError, match="EPOCH:STEP"):
            parse_step(bad)
