"""Backbone registry: bundled offline weights, timm names, local files; cached extraction.

The registry (names, checks) imports cheaply; the rest (PyTorch) is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from transferkit.backbones.registry import (
    REGISTRY,
    BackboneEntry,
    backbone_from_spec,
    list_backbones,
    load_backbone,
    register,
    resolve_backbone,
)

_LAZY = {"Backbone": "base", "Features": "base", "Stage": "base", "FeatureCache": "cache",
         "default_cache_dir": "cache", "ScratchCNN": "cnn"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"transferkit.backbones.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'transferkit.backbones' has no attribute {name!r}")


__all__ = [
    "REGISTRY",
    "Backbone",
    "BackboneEntry",
    "FeatureCache",
    "Features",
    "ScratchCNN",
    "Stage",
    "backbone_from_spec",
    "default_cache_dir",
    "list_backbones",
    "load_backbone",
    "register",
    "resolve_backbone",
]
