"""Zero-shot classification: no training examples, only the classes' names or descriptions.

Each class is embedded by the text backbone from its description (or its name put into a
``template``); an item is given the class whose embedding is most similar (cosine), with
probabilities softmax(similarity / temperature). The result is an ordinary ``TransferModel``
(backbone + a ``cosine`` head holding the class embeddings): it saves, loads, evaluates and
reports like any other.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin

from transferkit.backbones import Backbone, FeatureCache, load_backbone
from transferkit.data.dataset import Dataset
from transferkit.errors import DataError
from transferkit.heads import Head
from transferkit.model import TransferModel
from transferkit.strategies.base import ModelPredictMixin


def read_descriptions(spec: Mapping[str, str] | str | Path | None) -> dict[str, str]:
    """Class descriptions from a dict, a JSON object file, or a CSV with label,description."""
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        return {str(k): str(v) for k, v in spec.items()}
    p = Path(spec)
    if not p.is_file():
        raise DataError(f"{p}: descriptions file not found (a JSON object "
                        f"{{class: description}} or a CSV with label,description columns)")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{p}: not UTF-8") from None
    if p.suffix.lower() == ".json":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{p}: invalid JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{p}: expected a JSON object {{class: description}}")
        return {str(k): str(v) for k, v in obj.items()}
    rows = list(csv.DictReader(text.splitlines()))
    if not rows or not {"label", "description"} <= set(rows[0]):
        raise DataError(f"{p}: expected a CSV with 'label' and 'description' columns")
    return {r["label"].strip(): r["description"].strip() for r in rows}


def readable_name(name: str) -> str:
    """A class name as words: 'noun.animal' -> 'animal', 'support_ticket' -> 'support ticket'."""
    base = name.split(".", 1)[1] if "." in name and name.split(".", 1)[0].isalpha() else name
    return base.replace("_", " ").replace("-", " ").strip()


class ZeroShotClassifier(ModelPredictMixin, ClassifierMixin, BaseEstimator):
    """Classify by similarity to class descriptions; ``fit`` reads only the class names.

    ``descriptions``: {class: text} (dict, JSON file or CSV label,description); classes
    without one use ``template.format(readable class name)``.
    """

    def __init__(self, backbone: str | Backbone = "minilm",
                 descriptions: Mapping[str, str] | str | Path | None = None,
                 template: str = "{}", temperature: float = 0.05,
                 cache: FeatureCache | bool | None = True, arch: str | None = None,
                 seed: int = 0, skip_bad: bool = False, progress: Any = None) -> None:
        self.backbone = backbone
        self.descriptions = descriptions
        self.template = template
        self.temperature = temperature
        self.cache = cache
        self.arch = arch
        self.seed = seed
        self.skip_bad = skip_bad
        self.progress = progress

    def fit(self, X: Dataset | Sequence[Any] | None = None, y: Sequence[Any] | None = None,
            X_val: Any = None, y_val: Any = None, *,
            classes: Sequence[str] | None = None) -> ZeroShotClassifier:
        """Embed the class descriptions. Classes come from ``classes``, X's class names or y;
        no example is looked at."""
        t0 = time.perf_counter()
        if classes is None:
            if isinstance(X, Dataset):
                classes = X.class_names
            elif y is not None:
                classes = sorted({str(v) for v in y})
            else:
                raise ValueError("zero-shot needs the class names: pass classes=[...], a "
                                 "Dataset, or y")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if "{}" not in self.template:
            raise ValueError(f"template {self.template!r} must contain '{{}}' for the class name")
        bb = load_backbone(self.backbone, arch=self.arch)
        if bb.modality != "text":
            raise ValueError(f"zero-shot embeds class descriptions as text; backbone "
                             f"{bb.name!r} is a {bb.modality} backbone (use a text backbone)")
        desc = read_descriptions(self.descriptions)
        unknown = sorted(set(desc) - set(map(str, classes)))
        if unknown:
            raise DataError(f"descriptions name classes not in the data: {unknown}; classes: "
                            f"{list(classes)}")
        self.prompts_ = [desc.get(c) or self.template.format(readable_name(str(c)))
                         for c in classes]
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
        self.fit_seconds_ = time.perf_counter() - t0
        return self
