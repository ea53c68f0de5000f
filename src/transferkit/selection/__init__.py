"""Choosing without target labels or training: label-free criteria over a model's target
predictions, and transferability scores of features (or source predictions) for a task."""

from transferkit.selection.scores import (
    FEATURE_SCORES,
    SOURCE_SCORES,
    hscore,
    leep,
    logme,
    nce,
    transrate,
)
from transferkit.selection.unsupervised import (
    information_maximization,
    prediction_diversity,
    prediction_entropy,
    soft_neighborhood_density,
)

__all__ = ["FEATURE_SCORES", "SOURCE_SCORES", "hscore", "information_maximization", "leep",
           "logme", "nce", "prediction_diversity", "prediction_entropy",
           "soft_neighborhood_density", "transrate"]
