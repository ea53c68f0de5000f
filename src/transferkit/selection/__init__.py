"""Choosing without target labels: label-free criteria over a model's target predictions."""

from transferkit.selection.unsupervised import (
    information_maximization,
    prediction_diversity,
    prediction_entropy,
    soft_neighborhood_density,
)

__all__ = ["information_maximization", "prediction_diversity", "prediction_entropy",
           "soft_neighborhood_density"]
