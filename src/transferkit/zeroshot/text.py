"""Zero-shot text classification: no training examples, only the classes' names or
descriptions (the ``zeroshot`` strategy; zero-shot images are :mod:`transferkit.zeroshot`).

Each class is embedded by the text backbone from its description (or its name put into a
``template``); an item is given the class whose embedding is most similar (cosine), with
probabilities softmax(similarity / temperature). The result is an ordinary ``TransferModel``
(backbone + a ``cosine`` head holding the class embeddings): it saves, loads, evaluates and
reports like any other.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transferkit.backbones import Backbone, FeatureCache, load_backbone
from transferkit.data.classinfo import class_texts, read_descriptions
from transferkit.data.dataset import Dataset
from transferkit.heads import Head
from transferkit.model import TransferModel
from transferkit.strategies.base import Strategy, as_dataset


class ZeroShotClassifier(Strategy):
    """Classify by similarity to class descriptions; ``fit`` reads only the class names.

    ``descriptions``: {class: text} (dict, JSON file or CSV label,description); classes
    without one use ``template.format(readable class name)``.
    """

    def __init__(self, backbone: str | Backbone = "minilm",
                 descriptions: Mapping[str, str] | str | Path | None = None,
                 template: str = "{}", temperature: float = 0.05,
                 cache: FeatureCache | bool | None = True, arch: str | None = None,
                 seed: int = 0, skip_bad: bool = False, progress: Any = None,
                 device: str = "auto") -> None:
        self.backbone = backbone
        self.descriptions = descriptions
        self.template = template
        self.temperature = temperature
        self.cache = cache
        self.arch = arch
        self.seed = seed
        self.skip_bad = skip_bad
        self.progress = progress
        self.device = device

    def check_params(self) -> None:
        """temperature and template (a ValueError names the bad one)."""
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if "{}" not in self.template:
            raise ValueError(f"template {self.template!r} must contain '{{}}' for the class name")

    def fit(self, X: Dataset | Sequence[Any] | None = None, y: Sequence[Any] | None = None,
            X_val: Any = None, y_val: Any = None, *,
            classes: Sequence[str] | None = None) -> ZeroShotClassifier:
        """Embed the class descriptions. Classes come from ``classes``, X's class names or y;
        no example is looked at (validation data, if given, only scores)."""
        self.check_params()
        t0 = time.perf_counter()
        if classes is None:
            if isinstance(X, Dataset):
                classes = X.class_names
            elif y is not None:
                classes = sorted({str(v) for v in y})
            else:
                raise ValueError("zero-shot needs the class names: pass classes=[...], a "
                                 "Dataset, or y")
        bb = load_backbone(self.backbone, arch=self.arch).place(self.device)
        if bb.modality != "text":
            raise ValueError(f"zero-shot embeds class descriptions as text; backbone "
                             f"{bb.name!r} is a {bb.modality} backbone (use a text backbone)")
        self.prompts_ = class_texts(classes, read_descriptions(self.descriptions),
                                    self.template)
        emb = bb.extract(self.prompts_, cache=self.cache).features
        head = Head({"kind": "cosine", "in_dim": bb.feature_dim, "num_classes": len(classes),
                     "logit_scale": 1.0 / self.temperature})
        head.prototypes.copy_(torch.as_tensor(emb))
        self.classes_ = np.asarray([str(c) for c in classes])
        self.backbone_ = bb
        self.model_ = TransferModel(bb, head, list(self.classes_), info={
            "strategy": "zeroshot", "prompts": dict(zip(self.classes_.tolist(), self.prompts_,
                                                        strict=True)),
            "temperature": self.temperature, "trainable_params": 0})
        self.skipped_: list[str] = []
        self.n_features_in_ = bb.feature_dim
        self.val_score_ = (None if X_val is None else
                           self._val_accuracy(as_dataset(X_val, y_val, "X_val")
                                              .align_classes(self.classes_)))
        self.fit_seconds_ = time.perf_counter() - t0
        return self
