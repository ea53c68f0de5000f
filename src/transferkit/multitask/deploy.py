"""Every sharing pattern as one deployable model: a :class:`MultiTaskBackbone` computes each
task's features (its own column of one feature vector) and each head reads its column.

The backbone holds the trained base network (its frozen prefix runs once per batch), the
joint :class:`MultiTaskNet` without its heads' role (soft, hierarchical, shared-private, or
hard sharing with per-task BatchNorm statistics), and the single-task network of every task
the per-task guard kept. A head is a linear head over the whole vector whose weights are zero
outside its task's column, so the saved model is an ordinary multi-head
:class:`~transferkit.model.TransferModel`: ``predict``/``predict_all`` load it, and ONNX
export gives one output per head. The spec rebuilds the architecture offline (no pickle).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from transferkit.backbones.base import Backbone, Stage
from transferkit.multitask.net import MultiTaskNet

if TYPE_CHECKING:
    from transferkit.model import TransferModel
    from transferkit.multitask.learner import MultiTaskFit


class _Columns(nn.Module):
    """Prepared batch -> every task's features side by side, in ``tasks`` order."""

    def __init__(self, base: nn.Module, prefix: Sequence[nn.Module],
                 nets: Mapping[str, MultiTaskNet], source: Mapping[str, str]) -> None:
        super().__init__()
        self.base = base  # the base network (its prefix modules run here)
        self.prefix = list(prefix)  # modules of ``base``: not registered twice
        self.nets = nn.ModuleDict(dict(nets))
        self.source = dict(source)
        self._stats = [n.task_bn for n in self.nets.values() if n.task_bn is not None]
        for st in self._stats:
            st.use(st.active or st.names[0])

    def forward(self, x: Any) -> torch.Tensor:
        for m in self.prefix:
            x = m(x)
        before = [st.active for st in self._stats]
        out = torch.cat([self.nets[src].features(t, x) for t, src in self.source.items()],
                        dim=1)
        for st, task in zip(self._stats, before, strict=True):
            st.use(task)  # as it was: a pass leaves the state (and an ONNX trace) unchanged
        return out


class MultiTaskBackbone(Backbone):
    """The features every task's head reads (see the module); items prepared as the base
    backbone prepares them."""

    def __init__(self, base: Backbone, nets: Mapping[str, MultiTaskNet],
                 source: Mapping[str, str], spec: Mapping[str, Any]) -> None:
        self.base = base
        self.name = f"multitask:{base.name}"
        self.modality, self.pretrained = base.modality, base.pretrained
        self.default_batch_size = base.default_batch_size
        self.data_config = getattr(base, "data_config", {})
        self._spec = dict(spec)
        n = int(spec["n_freeze"])
        seq = base.sequential_stages() if spec["cached"] else None
        prefix = [] if seq is None else seq[:n]
        self.model = _Columns(base.model, prefix, nets, source).eval()
        self.widths = {t: nets[s].heads[t].in_features for t, s in source.items()}
        self.feature_dim = sum(self.widths.values())

    def prepare(self, item: Any) -> torch.Tensor:
        """As the base backbone prepares it."""
        return self.base.prepare(item)

    def collate(self, prepared: Sequence[torch.Tensor]) -> Any:
        """As the base backbone collates."""
        return self.base.collate(prepared)

    def forward_features(self, batch: Any) -> torch.Tensor:
        """Every task's features, concatenated in task order."""
        return self.model(batch)

    def spec(self) -> dict[str, Any]:
        """The base backbone's spec and the multi-task networks' architecture."""
        return {"type": "multitask", "base": self.base.spec(), **self._spec,
                "source": dict(self.model.source)}

    def stages(self) -> list[Stage]:
        """One stage: the whole network (a deployed model, not fine-tuned further)."""
        return [Stage(name="multitask", modules=[self.model])]

    def assets(self) -> dict[str, bytes]:
        """The base backbone's extra files (a tokenizer)."""
        return self.base.assets()

    def export_example(self) -> tuple[Any, dict[str, dict[int, str]]]:
        """The base backbone's example batch."""
        return self.base.export_example()

    def export_metadata(self) -> dict[str, str]:
        """The base backbone's preprocessing."""
        return self.base.export_metadata()

    def column(self, task: str) -> slice:
        """Where task ``task``'s features lie in the feature vector."""
        start = 0
        for t, w in self.widths.items():
            if t == task:
                return slice(start, start + w)
            start += w
        raise KeyError(task)


def _net_spec(net: MultiTaskNet) -> dict[str, Any]:
    return {"tasks": {t: h.out_features for t, h in net.heads.items()},
            "sharing": net.sharing, "branch": net.branch, "bn": net.bn,
            "feature_dims": list(net.feature_dims)}


def _new_net(spec: Mapping[str, Any], stages: Sequence[nn.Module], pool: nn.Module
             ) -> MultiTaskNet:
    return MultiTaskNet(copy.deepcopy(list(stages)), copy.deepcopy(pool), spec["tasks"],
                        sharing=spec["sharing"], branch=spec["branch"],
                        feature_dims=spec["feature_dims"], bn=spec["bn"])


def multitask_from_spec(spec: Mapping[str, Any], state: Mapping[str, torch.Tensor],
                        assets_dir: Path | None = None) -> MultiTaskBackbone:
    """Rebuild a saved :class:`MultiTaskBackbone` from its spec and weights."""
    from transferkit.backbones import backbone_from_spec

    base_state = {k.removeprefix("base."): v for k, v in state.items()
                  if k.startswith("base.")}
    base = backbone_from_spec(spec["base"], base_state, assets_dir=assets_dir)
    seq = base.sequential_stages() if spec["cached"] else None
    n = int(spec["n_freeze"])
    stages, pool = (list(seq[n:-1]), seq[-1]) if seq is not None else \
        ([base.feature_module()], nn.Identity())
    nets = {k: _new_net(s, stages, pool) for k, s in spec["nets"].items()}
    for k, net in nets.items():
        net.load_state_dict({name.removeprefix(f"nets.{k}."): v for name, v in state.items()
                             if name.startswith(f"nets.{k}.")}, strict=True)
    keep = {k: v for k, v in spec.items() if k not in ("type", "base", "source")}
    return MultiTaskBackbone(base, nets, spec["source"], keep)


def deployable(fit: MultiTaskFit, info: Mapping[str, Any] | None = None) -> TransferModel:
    """One model answering every task of ``fit`` as the per-task guard chose: the joint
    network's column for a task that keeps the joint model, the single-task network's for a
    task that keeps its single-task model."""
    from transferkit.model import TransferModel
    from transferkit.strategies.finetune_net import as_head

    source = {t: f"single-{t}" if fit.kept.get(t) == "single-task" else "joint"
              for t in fit.class_names}
    nets = {s: fit.net if s == "joint" else fit.single_nets[t] for t, s in source.items()}
    spec = {"n_freeze": fit.n_freeze, "cached": fit.cached,
            "nets": {k: _net_spec(n) for k, n in nets.items()}}
    bb = MultiTaskBackbone(fit.backbone, nets, source, spec)
    heads = {}
    for t, s in source.items():
        own = nets[s].heads[t]
        wide = nn.Linear(bb.feature_dim, own.out_features).to(own.weight.device)
        with torch.no_grad():  # zero outside the task's column: the task's own head
            wide.weight.zero_()
            wide.weight[:, bb.column(t)] = own.weight
            wide.bias.copy_(own.bias)
        heads[t] = as_head(wide)
    return TransferModel(bb, heads, fit.class_names,
                         info={**(info or {}), "kept": {t: fit.kept.get(t, "joint")
                                                        for t in source}})


def save_deployable(where: Path, fit: MultiTaskFit, info: Mapping[str, Any]) -> str:
    """Save :func:`deployable` into the run directory ``where``; what was saved, in words."""
    deployable(fit, info).save(where)  # (save copies every tensor to the CPU)
    kept = ", ".join(f"{t}: {fit.kept.get(t, 'joint')}" for t in fit.class_names)
    return f"config.json + model.safetensors: one model, a head per task ({kept})"
