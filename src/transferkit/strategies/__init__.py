"""Transfer strategies: scikit-learn-style estimators registered by name."""

from __future__ import annotations

from typing import Any

from sklearn.base import BaseEstimator

from transferkit.heads import HEADS, Head, fit_head
from transferkit.strategies.contrastive import ContrastiveClassifier
from transferkit.strategies.finetune import FineTuneClassifier, LoRAClassifier
from transferkit.strategies.probe import ProbeClassifier
from transferkit.strategies.zeroshot import ZeroShotClassifier

STRATEGIES: dict[str, type[BaseEstimator]] = {"probe": ProbeClassifier,
                                              "finetune": FineTuneClassifier,
                                              "lora": LoRAClassifier,
                                              "contrastive": ContrastiveClassifier,
                                              "zeroshot": ZeroShotClassifier}


def make_strategy(name: str, **params: Any) -> BaseEstimator:
    """Build a registered strategy, passing only the parameters it accepts."""
    if name not in STRATEGIES:
        import difflib

        close = difflib.get_close_matches(name, list(STRATEGIES), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown strategy {name!r}.{hint} Known: {', '.join(STRATEGIES)}")
    cls = STRATEGIES[name]
    accepted = cls().get_params(deep=False)
    return cls(**{k: v for k, v in params.items() if k in accepted and v is not None})


__all__ = ["HEADS", "STRATEGIES", "ContrastiveClassifier", "FineTuneClassifier", "Head",
           "LoRAClassifier", "ProbeClassifier", "ZeroShotClassifier", "fit_head",
           "make_strategy"]
