"""The one training loop on real data (scikit-learn's digits): the behaviour strategies rely on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from transferkit.errors import RunError
from transferkit.train import TensorData, TrainConfig, Trainer, TrainModule


class Net(TrainModule):
    """Conv + BatchNorm + dropout on 8x8 digits: exercises RNG and buffers."""

    def __init__(self, seed: int = 0, head_scale: float = 1.0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.2))
        self.head = nn.Linear(8 * 16, 10)
        self.head_scale = head_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def training_step(self, batch):
        x, y = batch
        logits = self(x)
        return {"loss": nn.functional.cross_entropy(logits, y), "logits": logits, "y": y}

    def param_groups(self):
        return [{"params": list(self.body.parameters())},
                {"params": list(self.head.parameters()), "lr_scale": self.head_scale}]


@pytest.fixture(scope="module")
def digits() -> tuple[TensorData, TensorData]:
    x, y = load_digits(return_X_y=True)
    x = torch.as_tensor(x / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    return TensorData(x[:1200], y[:1200]), TensorData(x[1200:], y[1200:])


def _fit(digits, net=None, **cfg):
    net = net or Net()
    res = Trainer(TrainConfig(**{"epochs": 3, "batch_size": 64, "lr": 3e-3, **cfg}),
                  progress=False).fit(net, *digits)
    return net, res


def test_learns_digits_and_is_deterministic(digits) -> None:
    a, ra = _fit(digits)
    b, rb = _fit(digits)
    assert ra.history[-1]["val_accuracy"] >= 0.8  # chance: 0.1
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in ra.history]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in rb.history]
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    c, _ = _fit(digits, seed=1)
    assert not torch.equal(a.head.weight, c.head.weight)


def test_early_stopping_restores_the_best_epoch(digits) -> None:
    net, res = _fit(digits, epochs=30, lr=0.3, optimizer="sgd", patience=2,
                    monitor="val_loss", schedule="constant")
    assert res.stopped_early and len(res.history) < 30
    assert res.best_epoch == 1 + min(range(len(res.history)),
                                     key=lambda i: res.history[i]["val_loss"])
    again = Trainer(TrainConfig(), progress=False).evaluate(net, digits[1])
    assert again["val_loss"] == pytest.approx(res.best_metric, rel=1e-5)


def test_lr_scale_zero_freezes_a_group_and_schedules_end_at_zero(digits) -> None:
    net = Net(head_scale=0.0)
    start = net.head.weight.detach().clone()
    _, res = _fit(digits, net=net, weight_decay=0.0)
    assert torch.equal(net.head.weight, start)
    assert res.history[-1]["lr"] == pytest.approx(0.0, abs=1e-9)  # cosine to zero
    for schedule in ("onecycle", "constant"):
        _, r = _fit(digits, schedule=schedule, epochs=2, warmup_epochs=1)
        assert r.history[-1]["val_accuracy"] > 0.6


def test_bad_configs_and_mismatched_resume(digits, tmp_path: Path) -> None:
    for bad, needle in (({"optimizer": "adam"}, "optimizer"), ({"epochs": 0}, "epochs"),
                        ({"schedule": "step"}, "schedule"), ({"mode": "up"}, "mode"),
                        ({"monitor": ""}, "monitor")):
        with pytest.raises(ValueError, match=needle):
            Trainer(TrainConfig(**bad))
    with pytest.raises(RunError, match=r"monitor 'f1' is not among .*val_accuracy"):
        Trainer(TrainConfig(epochs=1, monitor="f1"), progress=False).fit(Net(), *digits)
    with pytest.raises(ValueError, match="empty"):
        Trainer(TrainConfig()).fit(Net(), TensorData(torch.zeros(0, 1, 8, 8), []))
    frozen = Net()
    for p in frozen.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="nothing to train"):
        Trainer(TrainConfig(), progress=False).fit(frozen, digits[0])
    Trainer(TrainConfig(epochs=1), checkpoint_dir=tmp_path, progress=False).fit(Net(), *digits)
    with pytest.raises(RunError, match="other settings"):
        Trainer(TrainConfig(epochs=2), checkpoint_dir=tmp_path, resume=True,
                progress=False).fit(Net(), *digits)


def test_resume_of_a_finished_run_returns_its_result(digits, tmp_path: Path) -> None:
    net, _ = _fit(digits)
    Trainer(TrainConfig(epochs=3, batch_size=64, lr=3e-3), checkpoint_dir=tmp_path,
            progress=False).fit(Net(), *digits)
    again = Net(seed=5)
    r2 = Trainer(TrainConfig(epochs=3, batch_size=64, lr=3e-3), checkpoint_dir=tmp_path,
                 resume=True, progress=False).fit(again, *digits)
    assert r2.resumed_from_epoch == 3
    assert torch.equal(again.head.weight, net.head.weight)


def test_progress_bar_and_log_lines(digits, capsys, monkeypatch) -> None:
    """Off a terminal (pytest captures stderr) no live bar is drawn: the log gets one line
    per epoch, and a plain progress line whenever PROGRESS_LINE_SECONDS have passed (set to 0
    here, so every step has passed it)."""
    from transferkit.train import progress

    lines: list[str] = []
    Trainer(TrainConfig(epochs=2, batch_size=256), progress=True, label="digits",
            log=lines.append).fit(Net(), *digits)
    assert len(lines) == 2 and lines[1].startswith("digits epoch 2/2")
    assert "val_acc" in lines[1]
    out = capsys.readouterr()
    assert out.err == "" and out.out == ""  # no bar, no escape codes in a log file
    monkeypatch.setattr(progress, "PROGRESS_LINE_SECONDS", 0.0)
    lines.clear()
    Trainer(TrainConfig(epochs=2, batch_size=256), progress=True, label="digits",
            log=lines.append).fit(Net(), *digits)
    steps = [ln for ln in lines if ": step " in ln]
    n = len(steps) // 2
    assert n >= 2 and len(lines) == 2 * n + 2
    assert steps[0].startswith("digits epoch 1/2: step 1/") and f"step {n}/{n}," in steps[n - 1]
    assert steps[n].startswith("digits epoch 2/2: step 1/") and "loss" in steps[0]
    assert capsys.readouterr().err == ""
    lines.clear()
    Trainer(TrainConfig(epochs=2, batch_size=256), progress=False, label="digits",
            log=lines.append).fit(Net(), *digits)
    assert len(lines) == 2  # progress off: the epoch lines only


def test_length_grouped_batches_pad_less_and_still_shuffle() -> None:
    import numpy as np

    from transferkit.train import global_batches

    lengths = np.random.default_rng(0).integers(4, 60, size=500).tolist()
    grouped = global_batches(500, 32, seed=3, epoch=0, lengths=lengths)
    assert grouped == global_batches(500, 32, seed=3, epoch=0, lengths=lengths)  # resumable
    assert sorted(i for b in grouped for i in b) == list(range(500))  # each item once
    assert [len(b) for b in grouped].count(32) == 15  # 15 full batches and one of 20

    def padded(batches: list[list[int]]) -> int:
        return sum(len(b) * max(lengths[i] for i in b) for b in batches)

    plain = global_batches(500, 32, seed=3, epoch=0)
    assert padded(grouped) < 0.75 * padded(plain)
    nxt = global_batches(500, 32, seed=3, epoch=1, lengths=lengths)
    assert {frozenset(b) for b in nxt} != {frozenset(b) for b in grouped}  # new batches
    with pytest.raises(ValueError, match="lengths has 3 entries for 500 items"):
        global_batches(500, 32, seed=3, epoch=0, lengths=[1, 2, 3])
