"""Backbone: a pretrained network with its preprocessing, ordered stages and cached extraction."""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from transferkit.backbones.cache import FeatureCache
from transferkit.backbones.pipeline import Pipeline, prepared_batches
from transferkit.data.dataset import Dataset
from transferkit.data.images import item_key
from transferkit.device import (
    DeviceLike,
    check_precision_text,
    default_workers,
    move,
    precision_name,
    resolve_device,
)
from transferkit.errors import DataError

ProgressFn = Callable[[int, int], None]


@dataclass
class Features:
    """Extracted features for the items that could be read, and what was skipped."""

    features: np.ndarray
    kept: np.ndarray
    skipped: list[str] = field(default_factory=list)
    cache_hits: int = 0
    computed: int = 0
    seconds: float = 0.0


@dataclass
class Stage:
    """One ordered unit of a backbone (stem, a block group, the head conv) for freezing."""

    name: str
    modules: list[nn.Module]
    param_names: list[str] = field(default_factory=list)

    def parameters(self) -> list[nn.Parameter]:
        """The stage's parameters."""
        return [p for m in self.modules for p in m.parameters()]


class Backbone(ABC):
    """A pretrained feature extractor; subclasses define how items become model inputs.

    Subclasses set ``name``, ``modality``, ``feature_dim`` and ``model`` and implement
    ``prepare`` (one item -> tensor, raising ``DataError`` for an unreadable item),
    ``forward_features`` (batch -> [B, feature_dim]), ``spec`` and ``stages``.
    """

    name: str
    modality: str
    feature_dim: int
    model: nn.Module
    default_batch_size: int = 16
    #: weights learned elsewhere (False: random weights, training from scratch)
    pretrained: bool = True
    #: where and in which precision features are computed (:meth:`place`)
    device: DeviceLike = "auto"
    precision: str = "auto"

    # --- per-modality hooks -------------------------------------------------------------
    @abstractmethod
    def prepare(self, item: Any) -> torch.Tensor:
        """Turn one raw item into a model input tensor."""

    def collate(self, prepared: Sequence[torch.Tensor]) -> Any:
        """Prepared items -> one model input batch (a tensor; a dict of tensors for text)."""
        return torch.stack(list(prepared))

    @abstractmethod
    def forward_features(self, batch: Any) -> torch.Tensor:
        """Pooled features of a prepared batch, [B, feature_dim]."""

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """JSON-serialisable description that rebuilds this backbone's architecture."""

    @abstractmethod
    def stages(self) -> list[Stage]:
        """Ordered stages from input to output (for freezing the first k)."""

    def sequential_stages(self) -> list[nn.Module] | None:
        """``len(stages()) + 1`` modules whose composition equals ``forward_features``.

        Module i runs stage i; the last one pools. Lets training cache the output of frozen
        leading stages. None when the network cannot be cut this way.
        """
        return None

    def with_image_size(self, size: int) -> Backbone:
        """The same network and weights, fed images of ``size`` x ``size`` pixels."""
        raise ValueError(f"backbone {self.name!r} does not support another input size")

    def invalidate(self) -> None:
        """Forget everything derived from the weights (call after changing them)."""
        self._cache_key = None
        self._engines = None

    def assets(self) -> dict[str, bytes]:
        """Extra files (name -> bytes) a saved model needs besides the weights (a tokenizer)."""
        return {}

    def export_example(self) -> tuple[Any, dict[str, dict[int, str]]]:
        """(a small prepared batch, its dynamic axes by input name) for ONNX export.

        Images: one zero image named ``input`` with a dynamic batch axis.
        """
        size = getattr(self, "data_config", {}).get("input_size", [3, 224, 224])
        return torch.zeros(1, *size), {"input": {0: "batch"}}

    def export_metadata(self) -> dict[str, str]:
        """Metadata an exported ONNX model carries so a user can prepare its inputs."""
        return {"preprocessing": json.dumps(getattr(self, "data_config", {}))}

    def count_truncated(self, items: Sequence[Any]) -> int:
        """How many items lose content in ``prepare`` (over-long texts); 0 for images."""
        return 0

    def feature_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights a saved model needs to rebuild this backbone."""
        return self.model.state_dict()

    def feature_module(self) -> nn.Module:
        """An nn.Module mapping a prepared batch to features (for export and fine-tuning)."""
        return _FeatureModule(self)

    def image_side(self) -> int | None:
        """The shorter image side ``prepare`` resizes to (images are decoded no larger than
        a few times this); None for non-image backbones."""
        if self.modality != "image":
            return None
        cfg = getattr(self, "data_config", {})
        size = int(cfg.get("input_size", [3, 224, 224])[-1])
        return int(size / float(cfg.get("crop_pct", 1.0) or 1.0))

    def normalize_item(self, item: Any) -> Any:
        """Canonical form of a raw item before hashing (e.g. str paths -> Path for images)."""
        return Path(item) if self.modality == "image" and isinstance(item, str) else item

    # --- identity -----------------------------------------------------------------------
    def cache_key(self) -> str:
        """Hash of the weights, architecture and preprocessing: keys cached features."""
        if getattr(self, "_cache_key", None) is None:
            h = hashlib.blake2b(digest_size=20)
            h.update(json.dumps(self.spec(), sort_keys=True, default=str).encode())
            for k, v in sorted(self.model.state_dict().items()):
                h.update(k.encode())
                h.update(v.detach().cpu().contiguous().numpy().tobytes())
            self._cache_key = h.hexdigest()
        return self._cache_key

    # --- where and how it computes ---------------------------------------------------------
    def place(self, device: DeviceLike = "auto", precision: str = "auto") -> Backbone:
        """Compute on ``device`` in ``precision`` from now on (see :mod:`transferkit.device`);
        checked now; ``auto`` keeps what the backbone was given before (by default: the
        process's device and precision). Returns self."""
        if device is not None and str(device) != "auto":
            resolve_device(device)
            self.device = device
        if precision != "auto":
            self.precision = check_precision_text(precision)
        return self

    def pipeline(self, device: torch.device) -> Pipeline:
        """How items become a model input batch on ``device`` (default: ``prepare`` on the
        CPU, ``collate``, then the batch is moved)."""
        return Pipeline(self.prepare, self.collate, move, parallel=self.modality == "image")

    def engine(self, device: torch.device, precision: str) -> Callable[[Any], torch.Tensor]:
        """The callable computing features on ``device`` (fp32 on the CPU: the fastest exact
        engine; otherwise the network on the device, in autocast when ``precision`` asks)."""
        key = (str(device), precision)
        if getattr(self, "_engines", None) is None:
            self._engines: dict[tuple[str, str], Callable[[Any], torch.Tensor]] = {}
        self.model.to(device)  # (a no-op when it is there already)
        if key not in self._engines:
            if device.type == "cpu" and precision == "32":
                self._engines[key] = self._inference_ready()
            else:
                self._engines[key] = autocast_engine(self._device_model(device), device,
                                                     precision)
        return self._engines[key]

    def _device_model(self, device: torch.device) -> Callable[[Any], torch.Tensor]:
        """The network (already on ``device``) as batch -> features, ready for inference."""
        self.model.eval()
        return self.forward_features

    # --- extraction ---------------------------------------------------------------------
    def extract(self, data: Dataset | Sequence[Any], *, batch_size: int | None = None,
                cache: FeatureCache | bool | str | Path | None = True, skip_bad: bool = False,
                progress: ProgressFn | None = None) -> Features:
        """Features of every item, from the cache where possible, else computed in batches
        on the backbone's device (:meth:`place`).

        Unreadable items raise ``DataError`` naming the file, unless ``skip_bad`` is set:
        then they are left out (``kept`` gives the surviving indices) and listed in ``skipped``.
        """
        t0 = time.perf_counter()
        items = list(data.items) if isinstance(data, Dataset) else list(data)
        origins = (data.origins if isinstance(data, Dataset)
                   else [str(it) if isinstance(it, (str, Path)) else f"item[{i}]"
                         for i, it in enumerate(items)])
        items = [self.normalize_item(it) for it in items]
        device = resolve_device(getattr(self, "device", "auto"))
        precision = precision_name(device, getattr(self, "precision", "auto"))
        pipe = self.pipeline(device)
        run = _Extraction(self, items, origins, _as_cache(cache), skip_bad, progress)
        run.key = self.cache_key() + feature_tag(device, precision, pipe.tag)
        todo = run.lookup()
        if self.modality == "text":  # similar lengths batch together: less padding
            todo.sort(key=lambda i: len(items[i]))
        bs = batch_size or self.batch_size_on(device)
        run.compute(todo, bs, pipe, device, precision)
        return run.result(time.perf_counter() - t0, todo)

    def batch_size_on(self, device: torch.device) -> int:
        """The extraction batch size on ``device`` (larger on a GPU)."""
        return self.default_batch_size if device.type == "cpu" else max(
            self.default_batch_size, 256)

    def _inference_ready(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The fastest callable producing the same features as ``forward_features``."""
        self.model.eval()
        return self.forward_features


def feature_tag(device: torch.device, precision: str, pipeline_tag: str) -> str:
    """What, besides the weights, makes features differ: "" for fp32 with the backbone's own
    preprocessing (whatever the device), else the preprocessing path and precision."""
    parts = [t for t in (pipeline_tag, "" if precision == "32" else f"amp-{precision}") if t]
    return "".join(f"|{t}" for t in parts)


def autocast_engine(fn: Callable[[Any], torch.Tensor], device: torch.device,
                    precision: str) -> Callable[[Any], torch.Tensor]:
    """``fn`` run on batches moved to ``device``, in autocast when ``precision`` is 16/bf16;
    features come back as float32."""
    dtype = {"bf16": torch.bfloat16, "16": torch.float16}.get(precision)

    def run(batch: Any) -> torch.Tensor:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            return fn(move(batch, device)).float()

    return run


class _Extraction:
    """One ``extract`` call: cache lookup, batched computation, the result."""

    def __init__(self, bb: Backbone, items: list[Any], origins: list[str],
                 store: FeatureCache | None, skip_bad: bool,
                 progress: ProgressFn | None) -> None:
        self.bb, self.items, self.origins, self.store = bb, items, origins, store
        self.skip_bad, self.progress = skip_bad, progress
        self.key = ""
        self.keys: list[str | None] = []
        self.feats: dict[int, np.ndarray] = {}
        self.skipped: dict[int, str] = {}
        self.hits = 0

    def lookup(self) -> list[int]:
        """Item keys and cached features; the indices still to compute."""
        for i, it in enumerate(self.items):
            try:
                self.keys.append(item_key(it))
            except DataError as exc:
                if not self.skip_bad:
                    raise
                self.skipped[i] = _with_origin(self.origins[i], exc)
                self.keys.append(None)
        wanted = [k for k in self.keys if k is not None]
        found = self.store.get_many(self.key, wanted) if self.store else {}
        todo: list[int] = []
        for i, k in enumerate(self.keys):
            if k is not None and k in found:
                self.feats[i] = found[k]
            elif k is not None:
                todo.append(i)
        self.hits = len(self.feats)
        return todo

    def compute(self, todo: list[int], bs: int, pipe: Pipeline, device: torch.device,
                precision: str) -> None:
        """Features of ``todo``, batch by batch, stored as they come."""
        done = self.hits
        if self.progress:
            self.progress(done, len(self.items))
        if not todo:
            return
        engine = self.bb.engine(device, precision)
        batches = [todo[s:s + bs] for s in range(0, len(todo), bs)]
        workers = default_workers(device) if pipe.parallel else 0
        for b, prep in enumerate(prepared_batches(pipe, self.items, self.origins, batches,
                                                  workers=workers,
                                                  pin=device.type == "cuda")):
            if prep.bad and not self.skip_bad:
                first = next(iter(prep.bad.values()))
                raise DataError(f"{first} (pass skip_bad=True / --skip-bad to skip "
                                f"unreadable files)")
            self.skipped.update(prep.bad)
            if prep.ok:
                with torch.inference_mode():
                    out = engine(pipe.to_input(prep.batch, device)).cpu().numpy()
                new = {i: out[j] for j, i in enumerate(prep.ok)}
                self.feats.update(new)
                if self.store:
                    self.store.put_many(self.key, ((self.keys[i], v) for i, v in new.items()))
            done += len(batches[b])
            if self.progress:
                self.progress(done, len(self.items))

    def result(self, seconds: float, todo: list[int]) -> Features:
        """The features matrix of the readable items, and what was skipped."""
        kept = np.asarray(sorted(self.feats), dtype=np.int64)
        if len(kept) == 0:
            raise DataError("no readable items: every item was skipped "
                            f"(first: {next(iter(self.skipped.values()), 'none')})")
        matrix = np.stack([self.feats[i] for i in kept]).astype(np.float32, copy=False)
        if self.skipped:
            warnings.warn(f"skipped {len(self.skipped)} unreadable item(s), e.g. "
                          f"{next(iter(self.skipped.values()))}", stacklevel=3)
        computed = len([i for i in todo if i in self.feats])
        return Features(features=matrix, kept=kept,
                        skipped=[msg for _, msg in sorted(self.skipped.items())],
                        cache_hits=self.hits, computed=computed, seconds=seconds)


def _with_origin(origin: str, exc: Exception) -> str:
    msg = str(exc)
    return msg if origin in msg else f"{origin}: {msg}"


class _FeatureModule(nn.Module):
    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.model = backbone.model
        self._fn = backbone.forward_features

    def forward(self, x: Any) -> torch.Tensor:
        return self._fn(x)


def _as_cache(cache: FeatureCache | bool | str | Path | None) -> FeatureCache | None:
    if cache is None or cache is False:
        return None
    if cache is True:
        return FeatureCache()
    if isinstance(cache, FeatureCache):
        return cache
    return FeatureCache(cache)
