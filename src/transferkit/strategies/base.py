"""What every fitted strategy shares: prediction through its ``TransferModel``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from transferkit.data.dataset import Dataset


class ModelPredictMixin:
    """``predict_proba``/``predict`` through the fitted ``model_`` (backbone + head).

    ``predict`` goes through ``predict_proba``, so a strategy that computes probabilities
    its own way (``probe``: its feature cache settings) overrides only that.
    """

    model_: Any
    classes_: np.ndarray
    cache: Any

    def predict_proba(self, X: Dataset | Sequence[Any]) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``."""
        from transferkit.strategies.probe import _as_dataset

        return self.model_.predict_proba(_as_dataset(X, None, "X"), cache=self.cache)

    def predict(self, X: Dataset | Sequence[Any]) -> np.ndarray:
        """Predicted class names."""
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
