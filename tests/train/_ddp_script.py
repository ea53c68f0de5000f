"""Train a small MLP on sklearn's digits; run alone or under torchrun (see test_ddp.py)."""

from __future__ import annotations

import json
import sys

import torch
from sklearn.datasets import load_digits
from torch import nn

from transferkit.train import TensorData, TrainConfig, Trainer, TrainModule, dist_info


class MLP(TrainModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch):
        x, y = batch
        logits = self(x)
        return {"loss": nn.functional.cross_entropy(logits, y), "logits": logits, "y": y}


def main(out: str) -> None:
    torch.set_num_threads(1)
    x, y = load_digits(return_X_y=True)
    x = torch.as_tensor(x / 16.0, dtype=torch.float32)
    train, val = TensorData(x[:1280], y[:1280]), TensorData(x[1280:], y[1280:])
    module = MLP()
    res = Trainer(TrainConfig(epochs=3, batch_size=64, lr=3e-3, seed=0), progress=False).fit(
        module, train, val)
    rank, world = dist_info()
    if rank == 0:
        weights = torch.cat([p.detach().flatten() for p in module.parameters()]).tolist()
        with open(out, "w") as f:
            json.dump({"world": world, "history": res.history, "weights": weights}, f)


if __name__ == "__main__":
    main(sys.argv[1])
