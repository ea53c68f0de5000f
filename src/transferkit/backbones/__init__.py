"""Backbone registry: bundled offline weights, timm names, local files; cached extraction."""

from transferkit.backbones.base import Backbone, Features, Stage
from transferkit.backbones.cache import FeatureCache, default_cache_dir
from transferkit.backbones.cnn import ScratchCNN
from transferkit.backbones.registry import (
    REGISTRY,
    BackboneEntry,
    backbone_from_spec,
    list_backbones,
    load_backbone,
    register,
)

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
]
