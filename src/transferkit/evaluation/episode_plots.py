"""Plots of a few-shot evaluation: per-episode accuracy histograms and an episode montage."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from transferkit.evaluation.plots import _new_figure, _png


def episode_histogram_png(accuracies: Mapping[str, Sequence[float]]) -> bytes:
    """Histogram of per-episode accuracy, one outline per method, mean marked."""
    fig = _new_figure(6.4, 3.4)
    ax = fig.add_subplot()
    bins = np.linspace(0.0, 1.0, 21)
    for i, (name, accs) in enumerate(accuracies.items()):
        a = np.asarray(accs, dtype=float)
        ax.hist(a, bins=bins, histtype="step", lw=1.6, color=f"C{i % 10}",
                label=f"{name} (mean {a.mean():.3f})")
        ax.axvline(a.mean(), color=f"C{i % 10}", ls=":", lw=1.2)
    ax.set_xlabel("accuracy on an episode's queries")
    ax.set_ylabel("episodes")
    ax.set_title("accuracy per episode", fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    return _png(fig)


def episode_montage_png(support: Sequence[Any], support_labels: Sequence[int],
                        query: Sequence[Any], query_labels: Sequence[int],
                        predictions: Sequence[int], class_names: Sequence[str],
                        load: Callable[[Any], Image.Image], max_queries: int = 15) -> bytes:
    """One episode: the support images in a row per class, then queries with their
    prediction (green when right, red when wrong)."""
    ways = len(class_names)
    shots = max(1, int(np.bincount(np.asarray(support_labels), minlength=ways).max()))
    q = list(range(min(len(query), max_queries)))
    cols = max(shots, 5)
    rows = ways + (len(q) + cols - 1) // cols
    fig = _new_figure(1.3 * cols, 1.3 * rows + 0.4)
    grid = fig.add_gridspec(rows, cols)
    placed = dict.fromkeys(range(ways), 0)
    for item, lab in zip(support, support_labels, strict=True):
        ax = fig.add_subplot(grid[int(lab), placed[int(lab)]])
        placed[int(lab)] += 1
        ax.imshow(load(item), cmap="gray")
        ax.set_xticks([])
        ax.set_yticks([])
        if placed[int(lab)] == 1:
            ax.set_ylabel(str(class_names[int(lab)])[:14], fontsize=7)
    for k, i in enumerate(q):
        ax = fig.add_subplot(grid[ways + k // cols, k % cols])
        ax.imshow(load(query[i]), cmap="gray")
        ok = int(predictions[i]) == int(query_labels[i])
        ax.set_title(str(class_names[int(predictions[i])])[:12], fontsize=7,
                     color="#1a7f37" if ok else "#cf222e")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("support (one row per class), then queries with their prediction",
                 fontsize=9)
    return _png(fig)
