"""Transfer strategies: scikit-learn-style estimators, each registered by name with what it
accepts and needs (see :mod:`transferkit.strategies.registry`).

The registry imports cheaply; an estimator class is imported when it is first used.
"""

from __future__ import annotations

import importlib
from typing import Any

from transferkit.strategies.registry import (
    STRATEGIES,
    StrategySpec,
    list_strategies,
    make_strategy,
    register_strategy,
    strategy_spec,
)

_LAZY = {"ProbeClassifier": "strategies.probe", "FineTuneClassifier": "strategies.finetune",
         "LoRAClassifier": "strategies.finetune",
         "ContrastiveClassifier": "strategies.contrastive",
         "ZeroShotClassifier": "zeroshot.text", "Strategy": "strategies.base",
         "DomainAdaptClassifier": "strategies.adapt",
         "ProtoNetClassifier": "strategies.protonet",
         "GradientStrategy": "strategies.base", "HEADS": "heads", "Head": "heads",
         "fit_head": "heads"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"transferkit.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'transferkit.strategies' has no attribute {name!r}")


__all__ = ["HEADS", "STRATEGIES", "ContrastiveClassifier", "DomainAdaptClassifier",
           "FineTuneClassifier",
           "GradientStrategy", "Head", "LoRAClassifier", "ProbeClassifier",
           "ProtoNetClassifier", "Strategy",
           "StrategySpec", "ZeroShotClassifier", "fit_head", "list_strategies",
           "make_strategy", "register_strategy", "strategy_spec"]
