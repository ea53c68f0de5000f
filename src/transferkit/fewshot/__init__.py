"""Few-shot learning: episodes drawn from labelled data, methods that classify an episode
from its support set, and the mean accuracy with a confidence interval over the episodes."""

from transferkit.fewshot.episodes import EpisodeResult, draw_episodes, run_episodes
from transferkit.fewshot.methods import (
    FEATURE_METHODS,
    protonet_cosine,
    protonet_euclidean,
    prototypes,
    support_logreg,
)

__all__ = ["FEATURE_METHODS", "EpisodeResult", "draw_episodes", "protonet_cosine",
           "protonet_euclidean", "prototypes", "run_episodes", "support_logreg"]
