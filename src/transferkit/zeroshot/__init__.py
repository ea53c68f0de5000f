"""Zero-shot classification of classes without training images: methods that score classes
from side information (attribute rows, description embeddings), and generalised zero-shot
evaluation with calibrated stacking."""

from transferkit.zeroshot.gzsl import choose_gamma, gzsl_metrics, harmonic, per_class_accuracy
from transferkit.zeroshot.methods import (
    ATTRIBUTE_METHODS,
    DAP,
    ESZSL,
    METHODS,
    RankingMap,
    RidgeMap,
    ZeroShotMethod,
)

__all__ = ["ATTRIBUTE_METHODS", "DAP", "ESZSL", "METHODS", "RankingMap", "RidgeMap",
           "ZeroShotMethod", "choose_gamma", "gzsl_metrics", "harmonic", "per_class_accuracy"]
