"""Backbone: a pretrained network with its preprocessing, ordered stages and cached extraction."""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from transferkit.backbones.cache import FeatureCache
from transferkit.data.dataset import Dataset
from transferkit.data.images import item_key
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

    # --- extraction ---------------------------------------------------------------------
    def extract(self, data: Dataset | Sequence[Any], *, batch_size: int | None = None,
                cache: FeatureCache | bool | str | Path | None = True, skip_bad: bool = False,
                progress: ProgressFn | None = None) -> Features:
        """Features of every item, from the cache where possible, else computed in batches.

        Unreadable items raise ``DataError`` naming the file, unless ``skip_bad`` is set:
        then they are left out (``kept`` gives the surviving indices) and listed in ``skipped``.
        """
        t0 = time.perf_counter()
        items = list(data.items) if isinstance(data, Dataset) else list(data)
        origins = (data.origins if isinstance(data, Dataset)
                   else [str(it) if isinstance(it, (str, Path)) else f"item[{i}]"
                         for i, it in enumerate(items)])
        items = [self.normalize_item(it) for it in items]
        store = _as_cache(cache)
        bkey = self.cache_key()
        skipped: dict[int, str] = {}
        keys: list[str | None] = []
        for i, it in enumerate(items):
            try:
                keys.append(item_key(it))
            except DataError as exc:
                if not skip_bad:
                    raise
                skipped[i] = _with_origin(origins[i], exc)
                keys.append(None)
        found = store.get_many(bkey, [k for k in keys if k is not None]) if store else {}
        feats: dict[int, np.ndarray] = {}
        todo: list[int] = []
        for i, k in enumerate(keys):
            if k is None:
                continue
            if k in found:
                feats[i] = found[k]
            else:
                todo.append(i)
        hits = len(feats)
        if self.modality == "text":  # similar lengths batch together: less padding
            todo.sort(key=lambda i: len(items[i]))
        bs = batch_size or self.default_batch_size
        done = hits
        if progress:
            progress(done, len(items))
        if todo:
            batches = [todo[s:s + bs] for s in range(0, len(todo), bs)]

            def prep(batch: list[int]) -> tuple[list[int], list[torch.Tensor], dict[int, str]]:
                ok, tensors, bad = [], [], {}
                for i in batch:
                    try:
                        tensors.append(self.prepare(items[i]))
                        ok.append(i)
                    except DataError as exc:
                        bad[i] = _with_origin(origins[i], exc)
                return ok, tensors, bad

            model_in_eval = self._inference_ready()
            with ThreadPoolExecutor(max_workers=1) as pool:
                pending = pool.submit(prep, batches[0])
                for b in range(len(batches)):
                    ok, tensors, bad = pending.result()
                    if b + 1 < len(batches):
                        pending = pool.submit(prep, batches[b + 1])
                    if bad and not skip_bad:
                        first = next(iter(bad.values()))
                        raise DataError(f"{first} (pass skip_bad=True / --skip-bad to skip "
                                        f"unreadable files)")
                    skipped.update(bad)
                    if ok:
                        with torch.inference_mode():
                            out = model_in_eval(self.collate(tensors)).float().cpu().numpy()
                        new = {i: out[j] for j, i in enumerate(ok)}
                        feats.update(new)
                        if store:
                            store.put_many(bkey, ((keys[i], v) for i, v in new.items()))
                    done += len(batches[b])
                    if progress:
                        progress(done, len(items))
        kept = np.asarray(sorted(feats), dtype=np.int64)
        if len(kept) == 0:
            raise DataError("no readable items: every item was skipped "
                            f"(first: {next(iter(skipped.values()), 'none')})")
        matrix = np.stack([feats[i] for i in kept]).astype(np.float32, copy=False)
        if skipped:
            warnings.warn(f"skipped {len(skipped)} unreadable item(s), e.g. "
                          f"{next(iter(skipped.values()))}", stacklevel=2)
        return Features(features=matrix, kept=kept,
                        skipped=[msg for _, msg in sorted(skipped.items())],
                        cache_hits=hits, computed=len(todo) - len(
                            [i for i in todo if i in skipped]),
                        seconds=time.perf_counter() - t0)

    def _inference_ready(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The fastest callable producing the same features as ``forward_features``."""
        self.model.eval()
        return self.forward_features


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
