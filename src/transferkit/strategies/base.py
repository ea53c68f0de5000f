"""What every strategy shares: input coercion, checks, prediction through its fitted model,
the validation score, and (gradient strategies) the training parameters declared once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError

from transferkit.backbones import Backbone
from transferkit.data.dataset import Dataset, from_arrays
from transferkit.data.text import from_texts
from transferkit.errors import DataError
from transferkit.strategies.train_params import TrainParams
from transferkit.train import TrainConfig, Trainer


def as_dataset(X: Dataset | Sequence[Any], y: Sequence[Any] | None, name: str) -> Dataset:
    """X as a Dataset: a Dataset as is, a list of texts, or image paths/arrays."""
    if isinstance(X, Dataset):
        if y is not None:
            raise ValueError(f"{name} is a Dataset with its own labels; do not pass y")
        return X
    items = list(X)
    if items and all(isinstance(t, str) for t in items) and not any(
            _is_file(t) for t in items[:5]):
        return from_texts(items, y, source=f"<{name}>")
    return from_arrays(items, y, source=f"<{name}>")


def _is_file(s: str) -> bool:
    try:
        return len(s) < 4096 and "\n" not in s and Path(s).is_file()
    except OSError:
        return False


def check_modality(backbone: Backbone, data: Dataset) -> None:
    """Refuse data of another modality than the backbone's (text on an image backbone,
    audio on a text one, ...), naming both."""
    if data.modality != backbone.modality:
        def a(word: str) -> str:
            return f"an {word}" if word[:1] in "aeiou" else f"a {word}"

        raise DataError(f"{data.source}: {data.modality} data, but backbone "
                        f"{backbone.name!r} is {a(backbone.modality)} backbone; pick "
                        f"{a(data.modality)} backbone ('transferkit models' lists them)")


def require_labels(data: Dataset, what: str) -> Dataset:
    """``data`` when it is labelled; else an error naming it and how to label it."""
    if data.labels is None:
        raise DataError(f"{data.source}: {what} needs labelled data, and this has no labels "
                        f"(put each class in its own sub-folder, or give a CSV a label column)")
    return data


class Strategy(ClassifierMixin, BaseEstimator):
    """Base of every strategy: a scikit-learn classifier predicting through ``model_``.

    ``fit`` sets ``model_`` (a :class:`~transferkit.model.TransferModel`), ``classes_`` and
    ``val_score_``: accuracy on the validation data the strategy was given (or its own
    internal validation, e.g. cross-validation), None when it had none. Later code compares
    strategies on ``val_score_``, never on test data.
    """

    model_: Any
    classes_: np.ndarray
    cache: Any = True

    def check_params(self) -> None:
        """Check the options (cheap; no data read): a ValueError names the bad one."""

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(...) "
                                 f"before predicting")

    def predict_proba(self, X: Dataset | Sequence[Any]) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``."""
        self._check_fitted()
        return self.model_.predict_proba(as_dataset(X, None, "X"), cache=self.cache)

    def predict(self, X: Dataset | Sequence[Any]) -> np.ndarray:
        """Predicted class names."""
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]

    def _val_accuracy(self, val: Dataset | None) -> float | None:
        """Accuracy of the fitted model on labelled validation data (None without)."""
        if val is None or val.labels is None or len(val) == 0:
            return None
        proba = self.model_.predict_proba(val, cache=self.cache)
        return float((proba.argmax(axis=1) == val.labels).mean())


def auto_epochs(n: int, batch_size: int, target_steps: int = 100, max_epochs: int = 10) -> int:
    """Epochs giving about ``target_steps`` optimiser steps, between 1 and ``max_epochs``."""
    steps = max(1, math.ceil(n / batch_size))
    return int(min(max_epochs, max(1, math.ceil(target_steps / steps))))


class GradientStrategy(Strategy, TrainParams):
    """A strategy trained by the one Trainer: it takes the training parameters of
    :class:`~transferkit.strategies.train_params.TrainParams` (each estimator class is a
    keyword-only dataclass: ``@dataclass(**ESTIMATOR)``, its own parameters as fields; a
    subclass changes a training default by declaring the field again)."""

    seed: int

    def check_params(self) -> None:
        """The shared training options (a ValueError names the bad one)."""
        self._train_config(epochs=self.epochs or 1, lr=self.lr or 1e-3).validate()

    def _validation(self, X: Dataset | Sequence[Any], y: Sequence[Any] | None,
                    X_val: Dataset | Sequence[Any] | None, y_val: Sequence[Any] | None,
                    what: str) -> tuple[Dataset, Dataset, Dataset | None]:
        """(all the labelled training data, the part that trains, the validation data):
        ``X_val`` when given, else a seeded stratified ``holdout`` fraction of the training
        data (``holdout_note_`` says what was done, and ``log`` prints it)."""
        from transferkit.data.dataset import holdout_split
        from transferkit.train.plan import mix

        train = require_labels(as_dataset(X, y, "X"), what)
        self.holdout_note_: str | None = None
        if X_val is not None:
            return train, train, as_dataset(X_val, y_val, "X_val").align_classes(
                train.class_names)
        holdout = self._holdout_fraction()
        if not holdout:
            return train, train, None
        part, val, self.holdout_note_ = holdout_split(
            train, holdout, seed=mix(self.seed, "holdout"), seed_label=self.seed)
        if self.log is not None:
            self.log(self.holdout_note_)
        return train, part, val

    def _holdout_fraction(self) -> float:
        """The fraction held out for validation when none is given (0: none)."""
        return float(getattr(self, "holdout", 0) or 0)

    def _train_config(self, *, epochs: int, lr: float, warmup: float = 0.0,
                      **overrides: Any) -> TrainConfig:
        settings = {"epochs": epochs, "batch_size": self.batch_size, "lr": lr,
                    "optimizer": self.optimizer, "weight_decay": self.weight_decay,
                    "schedule": self.schedule, "warmup_epochs": min(warmup, epochs),
                    "clip_grad_norm": self.clip_grad_norm, "precision": self.precision,
                    "patience": self.patience, "group_by_length": self.group_by_length,
                    "seed": self.seed}
        settings.update(overrides)
        if settings["patience"] == 0:  # 0: never stop early
            settings["patience"] = None
        return TrainConfig(**settings)

    def _trainer(self, label: str, *, epochs: int, lr: float, warmup: float = 0.0,
                 subdir: str | None = None, **overrides: Any) -> Trainer:
        """The Trainer of one training phase, checkpointing into ``checkpoint_dir/subdir``."""
        ck = None if self.checkpoint_dir is None else Path(self.checkpoint_dir)
        if ck is not None and subdir:
            ck = ck / subdir
        return Trainer(self._train_config(epochs=epochs, lr=lr, warmup=warmup, **overrides),
                       checkpoint_dir=ck, resume=self.resume, device=self.device,
                       progress=bool(self.progress) if self.progress is not None else None,
                       label=label, log=self.log)
