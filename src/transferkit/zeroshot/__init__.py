"""Zero-shot classification, one family: images of classes without training images, scored
from side information (attribute rows, description embeddings) with generalised zero-shot
evaluation and calibrated stacking (:mod:`.methods`, :mod:`.gzsl`; the ``zeroshot``
command); and texts classified by their similarity to class descriptions (:mod:`.text`, the
``zeroshot`` strategy, imported when used)."""

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
