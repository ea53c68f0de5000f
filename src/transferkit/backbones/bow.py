"""Bag of words: texts as hashed word and word-pair counts, no pretrained knowledge at all —
the no-transfer baseline for text, as ``pixels`` is for images."""

from __future__ import annotations

import hashlib
import itertools
import re
from typing import Any

import torch
from torch import nn

from transferkit.backbones.base import Backbone, Stage
from transferkit.errors import DataError

_WORD = re.compile(r"[\w']+", re.UNICODE)


class BagOfWords(Backbone):
    """``dims`` hashed buckets of lower-cased words and adjacent word pairs, log(1 + count),
    L2-normalised."""

    modality = "text"
    default_batch_size = 256

    def __init__(self, dims: int = 4096) -> None:
        self.name = "bow"
        self.dims = int(dims)
        self.feature_dim = self.dims
        self.model = nn.Identity()
        self._cache_key: str | None = None

    def _bucket(self, token: str) -> int:
        digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(digest, "little") % self.dims

    def prepare(self, item: Any) -> torch.Tensor:
        """Hashed counts of the text's words and word pairs."""
        if not isinstance(item, str):
            raise DataError(f"the bag-of-words backbone reads texts, got {type(item).__name__}")
        words = _WORD.findall(item.lower())
        v = torch.zeros(self.dims)
        for tok in [*words, *(f"{a} {b}" for a, b in itertools.pairwise(words))]:
            v[self._bucket(tok)] += 1.0
        v = torch.log1p(v)
        return v / v.norm().clamp_min(1e-12)

    def forward_features(self, batch: torch.Tensor) -> torch.Tensor:
        """The counts themselves (nothing is learned)."""
        return batch

    def spec(self) -> dict[str, Any]:
        """The bucket count."""
        return {"type": "bow", "name": self.name, "dims": self.dims}

    def stages(self) -> list[Stage]:
        """None: nothing to train."""
        return []


def bag_of_words(keep_head: bool = False) -> BagOfWords:
    """The registry's ``bow``: 4,096 hashed buckets."""
    return BagOfWords()
