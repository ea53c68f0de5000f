"""Fine-tuning on each episode's support set: the backbone's top stages (on the cached output
of the frozen ones) and a cosine head that starts at the support's prototypes, trained for a
few full-batch steps, then the queries predicted. BatchNorm keeps its pretrained statistics
(a 5-image support cannot estimate them)."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn


class SupportFineTune:
    """An episode method (see :mod:`transferkit.fewshot.methods`) over frozen-prefix
    activations: ``top`` maps them to pooled features."""

    def __init__(self, top: nn.Module, *, steps: int = 25, lr: float = 1e-3,
                 scale: float = 10.0, seed: int = 0) -> None:
        self.top = top.eval()
        self.steps, self.lr, self.scale, self.seed = int(steps), float(lr), float(scale), seed
        self.__name__ = "support-finetune"

    def __call__(self, support: np.ndarray, labels: np.ndarray, query: np.ndarray,
                 ways: int) -> np.ndarray:
        xs, xq = torch.as_tensor(support), torch.as_tensor(query)
        ys = torch.as_tensor(labels, dtype=torch.long)
        net = copy.deepcopy(self.top)
        for p in net.parameters():
            p.requires_grad_(True)
        with torch.no_grad():
            fs = net(xs)
            protos = torch.stack([fs[ys == c].mean(0) for c in range(ways)])
        weight = nn.Parameter(nn.functional.normalize(protos, dim=1).clone())
        opt = torch.optim.Adam([*net.parameters(), weight], lr=self.lr)
        net.eval()  # BatchNorm on its pretrained statistics; dropout off

        def logits(x: torch.Tensor) -> torch.Tensor:
            f = nn.functional.normalize(net(x), dim=1)
            return self.scale * f @ nn.functional.normalize(weight, dim=1).T

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            for _ in range(self.steps):
                opt.zero_grad(set_to_none=True)
                nn.functional.cross_entropy(logits(xs), ys).backward()
                opt.step()
        with torch.no_grad():
            return logits(xq).numpy()
