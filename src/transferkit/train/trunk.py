"""The shared trunk: a backbone made ready for training, for every gradient strategy.

One place for what each strategy would otherwise do its own way: copying the caller's
backbone (never trained in place) and resizing its input, freezing the first N stages,
keeping frozen modules in eval mode (their BatchNorm statistics and dropout), the BatchNorm
policy of the trained stages, LoRA adapters (injected seeded, merged at the end), per-stage
learning-rate groups, and the frozen-prefix activation cache: with the first N stages frozen
and no augmentation their output never changes, so it is computed once (ONNX Runtime or
folded BatchNorm) and only the rest of the network runs while training.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from transferkit.backbones import Backbone, FeatureCache, load_backbone
from transferkit.data.augment import augment_transform
from transferkit.data.dataset import Dataset
from transferkit.device import DeviceLike, precision_name, resolve_device
from transferkit.errors import DataError
from transferkit.train.data import ItemData, TensorData, TwoViews
from transferkit.train.prefix import prefix_batches, prefix_engine

PREFIX_CACHE_BYTES = 4 * 2**30  # cached frozen-stage activations, at most


def fresh_backbone(backbone: str | Backbone, *, arch: str | None = None,
                   image_size: int | None = None, device: DeviceLike = "auto",
                   precision: str = "auto") -> Backbone:
    """A backbone of one's own to train (a copy of a given object, or loaded by name),
    computing on ``device`` in ``precision``."""
    if isinstance(backbone, Backbone):
        bb = copy.deepcopy(backbone)  # never train the caller's object in place
        bb.invalidate()
    else:
        bb = load_backbone(backbone, arch=arch)
    if image_size is not None:
        bb = bb.with_image_size(int(image_size))
    return bb.place(device, precision)


def channels_last(x: Any) -> Any:
    """4-d image batches in channels-last memory (faster convolutions on CPU); else as is."""
    if isinstance(x, torch.Tensor) and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


@dataclass
class TrunkView:
    """What one training phase trains on: its data streams, its network and its parts.

    ``module`` maps a batch of any stream's inputs (prepared items, or cached activations of
    the frozen prefix when ``cached``) to pooled features. ``stages`` are its trainable
    stages from input to output (for per-stage learning rates); ``frozen`` are modules of it
    that stay in eval mode while training. ``streams`` holds every named dataset of the
    phase ready for the Trainer; ``train`` and ``val`` are the streams of those names.
    """

    streams: dict[str, Sequence[Any]]
    module: nn.Module
    stages: list[nn.Module]
    frozen: list[nn.Module]
    cached: bool

    @property
    def train(self) -> Sequence[Any]:
        """The ``train`` stream."""
        return self.streams["train"]

    @property
    def val(self) -> Sequence[Any] | None:
        """The ``val`` stream (None when the phase has none)."""
        return self.streams.get("val")


class Trunk:
    """A backbone prepared for training: freezing, BN policy, LoRA, the prefix cache.

    ``train_bn=False`` keeps every BatchNorm on its pretrained statistics (the trained stages'
    scale and shift still train); frozen stages always keep theirs. ``cache_prefix`` allows
    the frozen-prefix activation cache; ``cache``/``progress`` are passed to feature
    extraction when every stage is frozen (then the prefix is the whole backbone).
    """

    def __init__(self, backbone: Backbone, *, train_bn: bool = True, cache_prefix: bool = True,
                 cache: FeatureCache | bool | None = True, progress: Any = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.backbone = backbone
        self.stages = backbone.stages()
        self.train_bn = train_bn
        self.cache_prefix = cache_prefix
        self.cache = cache
        self.progress = progress
        self.log = log
        self.lora_params: list[nn.Parameter] = []
        self.prefix_seconds = 0.0
        self.frozen_last = 0  # the top stages kept frozen (layer transfer from the top)

    # --- freezing ------------------------------------------------------------------------
    def n_freeze(self, freeze: int | str, *, keep_one: bool = False) -> int:
        """``freeze`` as a number of leading stages (``"all"`` = every stage; a negative
        number -k = every stage but the last k), checked.

        ``keep_one``: at least one stage must stay trainable (no head of its own to train).
        """
        n = len(self.stages)
        top = n - 1 if keep_one else n
        f: int | str = freeze
        if isinstance(f, str):
            if f == "all" and not keep_one:
                return n
            if not f.lstrip("-").isdigit():
                raise ValueError(f"--freeze {f!r}: give a number of stages (0..{top}, or -k "
                                 f"for all but the last k)" + ("" if keep_one else " or 'all'"))
            f = int(f)
        if int(f) < 0 and -int(f) <= n:
            f = n + int(f)  # all but the last |f| stages
        if not 0 <= int(f) <= top:
            what = (f"leave at least one to train (0..{top})" if keep_one
                    else f"choose 0..{n} or 'all'")
            raise ValueError(f"--freeze {f}: this backbone ({self.backbone.name!r}) has {n} "
                             f"stages; {what}")
        return int(f)

    def set_frozen(self, n_freeze: int, *, adapters: bool = True) -> None:
        """Stages before ``n_freeze`` frozen, the rest trainable. With LoRA adapters only the
        adapters train (and only if ``adapters``: a head-only phase trains none)."""
        top = len(self.stages) - self.frozen_last
        for i, st in enumerate(self.stages):
            for p in st.parameters():
                p.requires_grad_(n_freeze <= i < top)
        if self.lora_params:
            for name, p in self.backbone.model.named_parameters():
                p.requires_grad_(adapters and "lora_" in name)

    def trainable_params(self, n_freeze: int) -> int:
        """Parameters trained with ``n_freeze`` frozen stages (the adapters, with LoRA)."""
        if self.lora_params:
            return sum(p.numel() for p in self.lora_params)
        top = len(self.stages) - self.frozen_last
        return sum(p.numel() for st in self.stages[n_freeze:top] for p in st.parameters())

    def freeze_last(self, k: int, n_freeze: int = 0) -> None:
        """Keep the top ``k`` stages frozen too; at least one stage must train.

        The seeds advise this for speech (the last layers transfer, the first, near the
        speaker's acoustics, are retrained). Our measurement disagrees in its one setting
        (``benchmarks/results/speech_digits_layers.md``: 80 synthetic clips, 3 seeds): the
        last 3 stages frozen reached 0.100 on a real speaker and 0.700 on unseen voices,
        the first 3 frozen 0.367 / 0.839, the probe 0.967 / 0.986.
        """
        n = len(self.stages)
        if k < 0 or n_freeze + k >= n:
            raise ValueError(f"--freeze-last {k} with --freeze {n_freeze}: this backbone "
                             f"({self.backbone.name!r}) has {n} stages; leave at least one "
                             f"to train")
        self.frozen_last = int(k)

    # --- LoRA ----------------------------------------------------------------------------
    def add_lora(self, r: int, alpha: float | None, dropout: float,
                 targets: str | Sequence[str] | None, seed: int = 0) -> None:
        """Inject LoRA adapters (peft) into the backbone's network, seeded from ``seed``."""
        try:
            from peft import LoraConfig, inject_adapter_in_model
        except ImportError:
            raise ImportError("LoRA needs the 'peft' package (pip install peft)") from None
        bb = self.backbone
        if r < 1:
            raise ValueError(f"lora_r must be >= 1, got {r}")
        tgt = targets if targets is not None else getattr(bb, "lora_targets", None)
        if isinstance(tgt, str):
            tgt = [t.strip() for t in tgt.split(",") if t.strip()]
        if not tgt:
            raise ValueError(f"backbone {bb.name!r}: give lora_targets (module names to adapt, "
                             f"e.g. 'query,value')")
        cfg = LoraConfig(r=int(r), lora_alpha=float(alpha if alpha is not None else 2 * r),
                         lora_dropout=dropout, target_modules=list(tgt), bias="none")
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                inject_adapter_in_model(cfg, bb.model)
        except ValueError as exc:
            raise ValueError(f"LoRA on {bb.name!r}: {exc}") from None
        self.lora_params = [p for n, p in bb.model.named_parameters() if "lora_" in n]
        if not self.lora_params:
            raise ValueError(f"LoRA: no module of {bb.name!r} matches {tgt}")

    def finish(self) -> Backbone:
        """The trained backbone as a plain network: adapters merged, every parameter
        trainable again, eval mode, derived state (cache key, engines) forgotten."""
        model = self.backbone.model
        if self.lora_params:
            from peft.tuners.tuners_utils import BaseTunerLayer

            for name, mod in list(model.named_modules()):
                if isinstance(mod, BaseTunerLayer):
                    mod.merge()
                    parent_name, _, child = name.rpartition(".")
                    parent = model.get_submodule(parent_name) if parent_name else model
                    setattr(parent, child, mod.get_base_layer())
            self.lora_params = []
        for p in model.parameters():
            p.requires_grad_(True)
        model.eval()
        self.backbone.invalidate()
        return self.backbone

    # --- what a phase trains on ------------------------------------------------------------
    def view(self, train: Dataset, val: Dataset | None, n_freeze: int, *,
             augment: str = "none", adapters: bool = True,
             label: str = "train") -> TrunkView:
        """Streams ``train`` (augmented with ``augment``) and ``val`` of a phase with
        ``n_freeze`` frozen stages (see :meth:`views`)."""
        return self.views({"train": train, "val": val}, n_freeze,
                          augment={"train": augment}, adapters=adapters, label=label)

    def views(self, datasets: Mapping[str, Dataset | None], n_freeze: int, *,
              augment: Mapping[str, str | tuple[str, str]] | None = None,
              adapters: bool = True, label: str = "train") -> TrunkView:
        """Data and network of a phase with ``n_freeze`` frozen stages, for named datasets
        (None entries are left out). Freezes the stages; LoRA adapters train only if
        ``adapters``.

        ``augment`` maps a stream to a preset, or to two presets: then each item comes as
        two views, ``((first, second), label)`` (e.g. FixMatch's weak and strong views).
        Without augmentation anywhere, frozen leading stages run once: their output is
        cached (within ``PREFIX_CACHE_BYTES``, else they run every step, with a message).
        """
        self.set_frozen(n_freeze, adapters=adapters)
        bb, stages = self.backbone, self.stages
        data = {k: v for k, v in datasets.items() if v is not None}
        augs = {k: v for k, v in (augment or {}).items() if k in data and v not in (None, "none")}
        for name in augs:
            for preset in (augs[name],) if isinstance(augs[name], str) else augs[name]:
                augment_transform(preset)  # an unknown preset is an error naming it
        seq = bb.sequential_stages() if self.cache_prefix else None
        all_frozen = n_freeze == len(stages)
        tp = time.perf_counter()
        cached = None
        if not augs and n_freeze > 0 and (seq is not None or all_frozen):
            try:
                cached = self._prefix_outputs(seq, n_freeze, data)
            except MemoryError as e:  # too many activations to keep: run the frozen stages
                msg = f"{label}: {e}; the frozen stages run every epoch instead"
                if self.log is not None:
                    self.log(msg)
                else:
                    warnings.warn(msg, stacklevel=2)
        self.prefix_seconds += time.perf_counter() - tp
        if cached is not None:
            module: nn.Module = (nn.Identity() if all_frozen or seq is None
                                 else nn.Sequential(*seq[n_freeze:]))
            view = TrunkView(cached, module, [] if seq is None else list(seq[n_freeze:-1]),
                             [], True)
        else:
            streams: dict[str, Sequence[Any]] = {}
            for name, ds in data.items():
                a = augs.get(name)
                if isinstance(a, tuple):
                    streams[name] = TwoViews(
                        ItemData(bb, ds.items, ds.labels, augment=augment_transform(a[0])),
                        ItemData(bb, ds.items, ds.labels, augment=augment_transform(a[1])))
                else:
                    streams[name] = ItemData(bb, ds.items, ds.labels,
                                             augment=augment_transform(a) if a else None)
            view = TrunkView(streams, bb.feature_module(),
                             [nn.ModuleList(st.modules) for st in stages[n_freeze:]],
                             [m for st in stages[:n_freeze] for m in st.modules], False)
        if self.frozen_last:  # frozen top stages keep their statistics and dropout off
            view.frozen += [m for st in stages[len(stages) - self.frozen_last:]
                            for m in st.modules]
        if not self.train_bn:  # BatchNorm statistics stay the pretrained ones everywhere
            view.frozen += [m for m in view.module.modules()
                            if isinstance(m, nn.modules.batchnorm._NormBase)]
        return view

    def _prefix_outputs(self, seq: list[nn.Module] | None, n_freeze: int,
                        data: Mapping[str, Dataset]) -> dict[str, TensorData]:
        """Activations of the frozen leading stages (features, when every stage is frozen),
        one TensorData per named dataset."""
        bb = self.backbone
        total = 0
        if n_freeze == len(self.stages) or seq is None:
            def run(ds: Dataset) -> torch.Tensor:
                f = bb.extract(ds, cache=self.cache,
                               progress=self.progress if callable(self.progress) else None)
                return torch.from_numpy(f.features)
        else:
            device = resolve_device(bb.device)
            fast = prefix_engine(bb, nn.Sequential(*seq[:n_freeze]).eval(), n_freeze,
                                  device, precision_name(device, bb.precision))

            def run(ds: Dataset) -> torch.Tensor:
                nonlocal total
                outs: list[torch.Tensor] = []
                for out in prefix_batches(bb, ds, fast, device):
                    total += out.numel() * 4
                    if total > PREFIX_CACHE_BYTES:
                        raise MemoryError("frozen-stage activations exceed the cache budget "
                                          f"({PREFIX_CACHE_BYTES / 2**30:.1f} GiB)")
                    outs.append(out.clone())
                return torch.cat(outs)

        return {name: TensorData(run(ds), ds.labels) for name, ds in data.items()}

    # --- readable items --------------------------------------------------------------------
    def readable(self, ds: Dataset, *, skip_bad: bool, skipped: list[str]) -> Dataset:
        """``ds`` without unreadable items when ``skip_bad`` (each listed in ``skipped``);
        otherwise the first unreadable item is an error naming it."""
        from transferkit.data.images import load_image

        bb = self.backbone
        side = bb.image_side()

        def check(item: Any) -> Any:
            return load_image(item, side) if bb.modality == "image" else bb.prepare(item)

        bad: list[int] = []
        for i, it in enumerate(ds.items):
            try:
                check(bb.normalize_item(it))
            except DataError as exc:
                if not skip_bad:
                    raise DataError(f"{exc} (pass skip_bad=True / --skip-bad to skip "
                                    f"unreadable files)") from None
                bad.append(i)
                skipped.append(str(exc))
        if not bad:
            return ds
        keep = np.setdiff1d(np.arange(len(ds)), bad)
        if len(keep) == 0:
            raise DataError(f"{ds.source}: no readable items")
        return ds.subset(keep)


def stage_param_groups(module: nn.Module, stages: Sequence[nn.Module], *, layer_decay: float,
                       weight_decay: float) -> list[dict[str, Any]]:
    """Optimiser groups of ``module``'s trainable parameters: each stage from the top down
    gets ``layer_decay`` times the lr scale of the stage above; the rest the base lr."""
    groups: list[dict[str, Any]] = []
    seen: set[int] = set()
    trainable = [m for m in stages if any(p.requires_grad for p in m.parameters())]
    for depth, m in enumerate(reversed(trainable)):
        ps = [p for p in m.parameters() if p.requires_grad and id(p) not in seen]
        seen.update(id(p) for p in ps)
        if ps:
            groups.append({"params": ps, "lr_scale": layer_decay ** depth,
                           "weight_decay": weight_decay})
    rest = [p for p in module.parameters() if p.requires_grad and id(p) not in seen]
    if rest:
        groups.append({"params": rest, "weight_decay": weight_decay})
    return groups
