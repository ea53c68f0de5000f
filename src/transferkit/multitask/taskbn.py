"""Per-task BatchNorm statistics (domain-specific BatchNorm, as in DSBN): every BatchNorm of
the shared stages keeps one pair of running statistics per task, while its scale and shift
(and every other weight) stay shared.

In joint training each task's batch runs through the trunk on its own, so the batch
statistics used in training are already per task; what mixes the tasks is the running
statistics every batch updates — at test time each domain would be normalised with the
average of all domains. :class:`TaskStatistics` gives each task its own running buffers and
points every BatchNorm at the active task's buffers before the trunk runs (the module stays
the same object: timm's fused BatchNorm + activation keep working).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

BN_MODES = ("shared", "task", "frozen")
BN_CHOICES = ("auto", *BN_MODES)  # auto: chosen on validation (see bnselect)


def batchnorms(modules: Iterable[nn.Module]) -> list[nn.modules.batchnorm._NormBase]:
    """Every BatchNorm with running statistics under ``modules``, in order, each once."""
    out, seen = [], set()
    for mod in modules:
        for m in mod.modules():
            if (isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats
                    and id(m) not in seen):
                seen.add(id(m))
                out.append(m)
    return out


class _Stats(nn.Module):
    """One task's running mean, variance and batch count for each BatchNorm."""

    def __init__(self, bns: Sequence[nn.modules.batchnorm._NormBase]) -> None:
        super().__init__()
        for i, bn in enumerate(bns):
            self.register_buffer(f"mean{i}", bn.running_mean.detach().clone())
            self.register_buffer(f"var{i}", bn.running_var.detach().clone())
            self.register_buffer(f"count{i}", bn.num_batches_tracked.detach().clone())


class TaskStatistics(nn.Module):
    """Separate BatchNorm running statistics per task for the BatchNorms under ``modules``;
    :meth:`use` points them at one task's (all tasks start from the current statistics)."""

    def __init__(self, modules: Iterable[nn.Module], tasks: Sequence[str]) -> None:
        super().__init__()
        bns = batchnorms(modules)
        object.__setattr__(self, "_bns", bns)  # not registered: they belong to the trunk
        self.names = list(tasks)
        self.active: str | None = None  # whose statistics the BatchNorms hold now
        self.stats = nn.ModuleDict({f"task{i}": _Stats(bns) for i in range(len(tasks))})

    def __len__(self) -> int:
        return len(self._bns)

    def use(self, task: str) -> None:
        """Every BatchNorm reads and updates task ``task``'s running statistics from now on."""
        s = self.stats[f"task{self.names.index(task)}"]
        self.active = task
        for i, bn in enumerate(self._bns):
            bn.running_mean = getattr(s, f"mean{i}")
            bn.running_var = getattr(s, f"var{i}")
            bn.num_batches_tracked = getattr(s, f"count{i}")

    def of(self, task: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(running mean, running variance) of every BatchNorm for task ``task``."""
        s = self.stats[f"task{self.names.index(task)}"]
        return [(getattr(s, f"mean{i}"), getattr(s, f"var{i}")) for i in range(len(self))]
