"""The network of multi-task learning: how tasks share the trunk, and how their losses become
one update.

Sharing (the seeds' four patterns), on the trunk's trainable stages (a frozen prefix, when
there is one, is shared and cached by every pattern):

- ``hard``: one shared body, a private linear head per task;
- ``hierarchical``: one body; a task reads the pooled output of the stage it declares
  (low-level tasks from low stages) — the stages above serve the higher tasks only;
- ``shared-private``: the shared body plus a private copy per task, their pooled features
  concatenated before the task's head;
- ``soft``: a private copy of the body per task, and after every stage a cross-stitch unit:
  each task's next input is a learned mix of every task's activations (Misra et al. 2016).

BatchNorm statistics (``bn``) of the shared stages: ``shared`` (one set, updated by every
task's batches), ``task`` (one set per task: domain-specific BatchNorm, see ``taskbn``) or
``frozen`` (the pretrained statistics, kept in eval mode; scale and shift still train).

Weighting: ``equal`` (the sum of the task losses), ``uncertainty`` (Kendall et al. 2018: each
loss times exp(-s_t) plus s_t, s_t learned), or a gradient aggregator from ``torchjd`` (e.g.
``upgrad``, ``pcgrad``, ``mgda``, ``cagrad``): the Jacobian of the task losses with respect to
the shared parameters is aggregated into one update in the Trainer's backward hook (one
backward per task, each through its own batch's graph only).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from transferkit.multitask.taskbn import BN_MODES, TaskStatistics, batchnorms
from transferkit.train import StepContext, TrainModule
from transferkit.train.trunk import channels_last

SHARING = ("hard", "hierarchical", "shared-private", "soft")
AGGREGATORS = {"upgrad": "UPGrad", "pcgrad": "PCGrad", "mgda": "MGDA", "cagrad": "CAGrad",
               "dualproj": "DualProj", "imtlg": "IMTLG", "nashmtl": "NashMTL",
               "aligned-mtl": "AlignedMTL", "graddrop": "GradDrop", "mean": "Mean"}
WEIGHTINGS = ("equal", "uncertainty", *AGGREGATORS)
JACOBIANS = ("per-task", "torchjd", "torchjd-vmap")


def _pool(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3)) if x.dim() == 4 else x


def aggregator(name: str) -> Any:
    """The torchjd aggregator called ``name`` (instantiated with its defaults)."""
    try:
        import torchjd.aggregation as agg
    except ImportError:
        raise ImportError("gradient aggregation needs the 'torchjd' package "
                          "(pip install torchjd)") from None
    cls = getattr(agg, AGGREGATORS[name])
    return cls(0.5) if name == "cagrad" else cls(2) if name == "nashmtl" else cls()


class CrossStitch(nn.Module):
    """A learned T x T mix of the tasks' activations, initialised near the identity."""

    def __init__(self, tasks: int, keep: float = 0.9) -> None:
        super().__init__()
        off = (1.0 - keep) / max(1, tasks - 1)
        init = torch.full((tasks, tasks), off) + (keep - off) * torch.eye(tasks)
        self.alpha = nn.Parameter(init if tasks > 1 else torch.ones(1, 1))

    def forward(self, columns: list[torch.Tensor]) -> list[torch.Tensor]:
        stacked = torch.stack(columns)  # T x B x ...
        mixed = torch.einsum("ij,j...->i...", self.alpha, stacked)
        return list(mixed.unbind(0))


class MultiTaskNet(TrainModule):
    """Trunk stages (``stages``: modules from input to the last trainable stage; ``pool``: the
    module after them giving pooled features) shared per ``sharing``, a linear head per task.
    ``branch``: for hierarchical sharing, the number of stages each task reads (default: all).
    ``feature_dims``: pooled width after each number of stages (0 = before any).
    ``bn``: the BatchNorm statistics of the trunk, one of :data:`BN_MODES` (see the module).
    ``jacobian`` (gradient aggregation): ``per-task`` (one backward per task through its own
    graph), ``torchjd`` (torchjd's ``mtl_backward``, rows one by one) or ``torchjd-vmap``
    (every row at once through ``torch.vmap``: the old way; it fails on CUDA with
    channels-last activations)."""

    def __init__(self, stages: Sequence[nn.Module], pool: nn.Module, tasks: Mapping[str, int],
                 *, sharing: str = "hard", weighting: str = "equal",
                 branch: Mapping[str, int] | None = None, feature_dims: Sequence[int],
                 frozen: Sequence[nn.Module] = (), head_lr_scale: float = 1.0,
                 weight_decay: float = 0.01, seed: int = 0, bn: str = "shared",
                 jacobian: str = "per-task") -> None:
        super().__init__()
        if bn not in BN_MODES:
            raise ValueError(f"bn {bn!r}: choose from {', '.join(BN_MODES)}")
        if sharing not in SHARING:
            raise ValueError(f"sharing {sharing!r}: choose from {', '.join(SHARING)}")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting {weighting!r}: choose from {', '.join(WEIGHTINGS)}")
        self.names = list(tasks)
        self.sharing, self.weighting = sharing, weighting
        n = len(stages)
        self.branch = {t: int((branch or {}).get(t, n)) for t in self.names}
        bad = {t: k for t, k in self.branch.items() if not 0 <= k <= n}
        if bad:
            raise ValueError(f"branch stages {bad} outside 0..{n} (the trainable stages)")
        self.stages = nn.ModuleList(stages)
        self.pool = pool
        if jacobian not in JACOBIANS:
            raise ValueError(f"jacobian {jacobian!r}: choose from {', '.join(JACOBIANS)}")
        self.bn, self.jacobian = bn, jacobian
        self.feature_dims = [int(d) for d in feature_dims]
        self.set_frozen_modules([*frozen, *(batchnorms(stages) if bn == "frozen" else [])])
        self.head_lr_scale, self.weight_decay = head_lr_scale, weight_decay
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if sharing in ("shared-private", "soft"):
                self.private = nn.ModuleDict({t: nn.ModuleList(copy.deepcopy(list(stages)))
                                              for t in self.names})
            if sharing == "soft":
                self.stitches = nn.ModuleList(CrossStitch(len(self.names)) for _ in range(n))
            width = {t: (feature_dims[self.branch[t]] if self.branch[t] < n or sharing !=
                         "hierarchical" else feature_dims[n]) for t in self.names}
            if sharing == "shared-private":
                width = {t: 2 * feature_dims[n] for t in self.names}
            self.heads = nn.ModuleDict({t: nn.Linear(width[t], k) for t, k in tasks.items()})
        if weighting == "uncertainty":
            self.log_vars = nn.Parameter(torch.zeros(len(self.names)))
        self._aggregator = aggregator(weighting) if weighting in AGGREGATORS else None
        self.task_bn = TaskStatistics(self.stages, self.names) if bn == "task" else None
        if bn == "frozen" and sharing in ("shared-private", "soft"):
            self.set_frozen_modules([*self.frozen_modules(), *batchnorms(self.private.values())])

    # --- features ----------------------------------------------------------------------------
    def _run(self, mods: Iterable[nn.Module], x: torch.Tensor, pool_at_end: bool
             ) -> torch.Tensor:
        for m in mods:
            x = m(x)
        return self.pool(x) if pool_at_end else _pool(x)

    def features(self, task: str, x: Any) -> torch.Tensor:
        """The pooled features task ``task``'s head reads for inputs ``x``."""
        x = channels_last(x)
        n = len(self.stages)
        if self.task_bn is not None:
            self.task_bn.use(task)
        if self.sharing == "hard":
            return self._run(self.stages, x, True)
        if self.sharing == "hierarchical":
            k = self.branch[task]
            return self._run(list(self.stages)[:k], x, k == n)
        if self.sharing == "shared-private":
            return torch.cat([self._run(self.stages, x, True),
                              self._run(self.private[task], x, True)], dim=1)
        columns = [x] * len(self.names)  # soft: every task's column, stitched stage by stage
        for i in range(n):
            columns = [self.private[t][i](c) for t, c in zip(self.names, columns, strict=True)]
            columns = self.stitches[i](columns)
        return self.pool(columns[self.names.index(task)])

    def forward(self, x: Any, task: str | None = None) -> torch.Tensor:
        """Logits of ``task`` (default: the first)."""
        task = task or self.names[0]
        return self.heads[task](self.features(task, x))

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task's loss reaches (what gradient aggregation combines)."""
        groups: list[nn.Module] = [self.stages]
        if self.sharing == "soft":
            groups = [self.private, self.stitches]
        return [p for g in groups for p in g.parameters() if p.requires_grad]

    # --- training ----------------------------------------------------------------------------
    def training_step(self, batch: Mapping[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Each task's cross-entropy on its own batch, combined per ``weighting``."""
        losses, feats = [], []
        out: dict[str, Any] = {}
        for t in self.names:
            if t not in batch:
                continue
            x, y = batch[t]
            f = self.features(t, x)
            loss = nn.functional.cross_entropy(self.heads[t](f), y)
            losses.append(loss)
            feats.append(f)
            out[f"{t}_loss"] = loss.detach()
        if self.weighting == "uncertainty":
            s = self.log_vars[[self.names.index(t) for t in self.names if t in batch]]
            total = sum(torch.exp(-si) * li + si for si, li in zip(s, losses, strict=True))
        else:
            total = sum(losses)
        # the graph's tensors, for the aggregator's backward only (they would block deepcopy)
        self._pending = (losses, feats) if self._aggregator is not None else None
        return {"loss": total, **out}

    def backward(self, out: dict[str, Any], ctx: StepContext) -> None:
        """Plain backward, or the task losses' Jacobian aggregated into one gradient.

        Each task's batch has its own graph, so each task's gradient is one backward through
        that graph alone (torchjd's ``mtl_backward`` differentiates every row through every
        task's graph: T times the work here); the rows go to torchjd's aggregator."""
        pending, self._pending = self._pending, None  # no graph kept on the module (deepcopy)
        if self._aggregator is None:
            ctx.backward(out["loss"])
            return
        losses, feats = pending
        shared = self.shared_parameters()
        names = [t for t in self.names if f"{t}_loss" in out]
        if self.jacobian != "per-task":
            self._torchjd_backward(names, losses, feats, shared)
            return
        rows = []
        for t, loss in zip(names, losses, strict=True):
            own = [p for p in self.heads[t].parameters() if p.requires_grad]
            if self.sharing == "shared-private":  # private copies: each task's own weights
                own += [p for p in self.private[t].parameters() if p.requires_grad]
            grads = torch.autograd.grad(loss, shared + own, allow_unused=True)
            for p, g in zip(own, grads[len(shared):], strict=True):
                if g is not None:
                    p.grad = g if p.grad is None else p.grad + g
            rows.append(torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                                   for p, g in zip(shared, grads[:len(shared)], strict=True)]))
        combined = self._aggregator(torch.stack(rows))
        offset = 0
        for p in shared:
            g = combined[offset:offset + p.numel()].view_as(p)
            p.grad = g.clone() if p.grad is None else p.grad + g
            offset += p.numel()

    def _torchjd_backward(self, names: list[str], losses: list[torch.Tensor],
                          feats: list[torch.Tensor], shared: list[nn.Parameter]) -> None:
        from torchjd.autojac import jac_to_grad, mtl_backward

        heads = [list(self.heads[t].parameters()) for t in names]
        if self.sharing == "shared-private":
            heads = [h + list(self.private[t].parameters()) for h, t in zip(heads, names,
                                                                             strict=True)]
        mtl_backward(losses, features=feats, tasks_params=heads, shared_params=shared,
                     parallel_chunk_size=None if self.jacobian == "torchjd-vmap" else 1)
        jac_to_grad(shared, self._aggregator)

    def param_groups(self) -> list[dict[str, Any]]:
        """Heads (and the loss weights) at ``head_lr_scale``; the rest at the base lr."""
        head = list(self.heads.parameters()) + (
            [self.log_vars] if self.weighting == "uncertainty" else [])
        ids = {id(p) for p in head}
        rest = [p for p in self.parameters() if id(p) not in ids]
        return [{"params": head, "lr_scale": self.head_lr_scale, "weight_decay": 0.0},
                {"params": rest, "weight_decay": self.weight_decay}]

    # --- validation ----------------------------------------------------------------------------
    def validate(self, streams: Mapping[str, Iterable[Any]]) -> dict[str, float]:
        """``<task>_val_accuracy`` per task and their mean, ``val_accuracy``."""
        out: dict[str, float] = {}
        for t, batches in streams.items():
            correct = n = 0
            for x, y in batches:
                correct += int((self(x, t).argmax(1) == y).sum())
                n += len(y)
            if n:
                out[f"{t}_val_accuracy"] = correct / n
        accs = [v for v in out.values()]
        if accs:
            out["val_accuracy"] = sum(accs) / len(accs)
        return out
