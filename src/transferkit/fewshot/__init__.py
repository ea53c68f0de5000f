"""Few-shot learning: episodes drawn from labelled data, methods that classify an episode
from its support set, and the mean accuracy with a confidence interval over the episodes."""

from transferkit.fewshot.episodes import EpisodeResult, draw_episodes, run_episodes
from transferkit.fewshot.methods import (
    ALIASES,
    FEATURE_METHODS,
    canonical,
    protonet_cosine,
    protonet_euclidean,
    prototypes,
    support_logreg,
)

__all__ = [
    "ALIASES",
    "FEATURE_METHODS",
    "EpisodeResult",
    "canonical",
    "draw_episodes",
    "protonet_cosine",
    "protonet_euclidean",
    "prototypes",
    "run_episodes",
    "support_logreg",
]
