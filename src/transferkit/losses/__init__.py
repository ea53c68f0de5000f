"""Method-agnostic losses: gradient reversal, domain alignment (DANN, CORAL, MMD) with one
signature (source features, target features, optional source weights), and self-training
(pseudo-labels, EMA teacher)."""

from transferkit.losses.alignment import (
    ALIGNMENTS,
    AlignmentLoss,
    CoralLoss,
    DomainAdversarialLoss,
    MMDLoss,
)
from transferkit.losses.grl import GradientReversal, dann_lambda, grad_reverse
from transferkit.losses.selftrain import EMATeacher, pseudo_label_loss

__all__ = ["ALIGNMENTS", "AlignmentLoss", "CoralLoss", "DomainAdversarialLoss", "EMATeacher",
           "GradientReversal", "MMDLoss", "dann_lambda", "grad_reverse", "pseudo_label_loss"]
