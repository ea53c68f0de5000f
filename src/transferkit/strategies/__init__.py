"""Transfer strategies: scikit-learn-style estimators, each registered by name with what it
accepts and needs (see :mod:`transferkit.strategies.registry`)."""

from __future__ import annotations

from transferkit.heads import HEADS, Head, fit_head
from transferkit.strategies.base import GradientStrategy, Strategy
from transferkit.strategies.contrastive import ContrastiveClassifier
from transferkit.strategies.finetune import FineTuneClassifier, LoRAClassifier
from transferkit.strategies.probe import ProbeClassifier
from transferkit.strategies.registry import (
    STRATEGIES,
    StrategySpec,
    list_strategies,
    make_strategy,
    register_strategy,
    strategy_spec,
)
from transferkit.strategies.zeroshot import ZeroShotClassifier

__all__ = ["HEADS", "STRATEGIES", "ContrastiveClassifier", "FineTuneClassifier",
           "GradientStrategy", "Head", "LoRAClassifier", "ProbeClassifier", "Strategy",
           "StrategySpec", "ZeroShotClassifier", "fit_head", "list_strategies",
           "make_strategy", "register_strategy", "strategy_spec"]
