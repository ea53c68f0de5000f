"""A two-stream consumer of the Trainer: labelled source digits, unlabelled shifted target.

Run as a script (see test_core_seams.py): ``python _two_stream.py OUT EPOCHS [--resume]``;
``TRANSFERKIT_TEST_KILL_AT=EPOCH:STEP`` makes it SIGKILL itself after that step.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from torch import nn

from transferkit.train import PairedPlan, TensorData, TrainConfig, Trainer, TrainModule


def digit_domains() -> dict[str, TensorData]:
    """Source: 800 digits with labels; target: 797 others with inverted intensities,
    unlabelled; source_val: 200 more labelled source digits (kept apart from training)."""
    x, y = load_digits(return_X_y=True)
    x = torch.as_tensor(x / 16.0, dtype=torch.float32)
    return {"source": TensorData(x[:800], y[:800]),
            "target": TensorData(1.0 - x[1000:], None),
            "source_val": TensorData(x[800:1000], y[800:1000])}


class MeanMatch(TrainModule):
    """Cross-entropy on the source + a ramped penalty on the gap between the mean features of
    the source and target batches of each step."""

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(64, 32), nn.ReLU())
        self.head = nn.Linear(32, 10)
        self.weight = weight
        self.register_buffer("both_streams", torch.zeros((), dtype=torch.long))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def training_step(self, batch, ctx):
        xs, ys = batch["source"]
        xt, yt = batch["target"]
        fs, ft = self.body(xs), self.body(xt)
        logits = self.head(fs)
        cls = nn.functional.cross_entropy(logits, ys)
        gap = ((fs.mean(0) - ft.mean(0)) ** 2).sum()
        lam = self.weight * min(1.0, 2 * ctx.progress)  # ramps up over the first half
        self._sizes = (len(xs), len(xt), int((yt < 0).sum()))
        return {"loss": cls + lam * gap, "cls_loss": cls, "align_loss": gap, "lambda": lam,
                "logits": logits, "y": ys}

    def on_step_end(self, out, ctx) -> None:
        n_src, n_tgt, unlabelled = self._sizes
        self.steps += 1
        self.both_streams += int(n_src > 0 and n_tgt > 0 and unlabelled == n_tgt)


def run(out: Path, epochs: int, resume: bool, weight: float = 1.0) -> dict:
    d = digit_domains()
    module = MeanMatch(weight)
    trainer = Trainer(TrainConfig(epochs=epochs, batch_size=32, lr=1e-2, seed=0,
                                  monitor="source_val_accuracy"),
                      checkpoint_dir=out / "ck", resume=resume, progress=False)
    res = trainer.fit(module, {"source": d["source"], "target": d["target"]},
                      {"source": d["source_val"]},
                      plan=PairedPlan("source", "target", length="source"))
    weights = torch.cat([p.detach().flatten() for p in module.parameters()]).tolist()
    return {"history": [{k: v for k, v in r.items() if k != "seconds"} for r in res.history],
            "weights": weights, "steps": int(module.steps),
            "both_streams": int(module.both_streams), "best_epoch": res.best_epoch}


if __name__ == "__main__":
    torch.set_num_threads(1)
    target = Path(sys.argv[1])
    result = run(target, int(sys.argv[2]), "--resume" in sys.argv)
    (target / "result.json").write_text(json.dumps(result))
