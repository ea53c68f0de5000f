"""The small convolutional network that meta-learning trains from scratch on small grey images
(the Omniglot "Conv-4": four 3x3 convolution blocks, each convolution, GroupNorm, ReLU and
2x2 max-pooling). GroupNorm normalises each image on its own, so nothing of an episode's
support leaks into its queries and MAML's functional inner loop needs no running statistics.
"""

from __future__ import annotations

import torch
from torch import nn


def conv4(width: int = 32, in_channels: int = 1, ways: int | None = None, blocks: int = 4,
          size: int = 28, seed: int = 0) -> nn.Sequential:
    """Conv-4 embedding (flattened output) of ``size``-pixel images; with ``ways`` a linear
    classifier on top."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers: list[nn.Module] = []
        c, side = in_channels, size
        for _ in range(blocks):
            side //= 2
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.GroupNorm(min(8, width), width),
                       nn.ReLU(), nn.MaxPool2d(2)]
            c = width
        layers.append(nn.Flatten())
        if ways is not None:
            layers.append(nn.Linear(width * side * side, ways))
        return nn.Sequential(*layers)
