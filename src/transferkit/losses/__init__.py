"""Method-agnostic losses: gradient reversal, domain alignment (DANN, CORAL, MMD, CMD) with one
signature (source features, target features, optional source weights), and self-training
(pseudo-labels, EMA teacher)."""

from transferkit.losses.alignment import (
    AlignmentLoss,
    CoralLoss,
    DomainAdversarialLoss,
    MMDLoss,
)
from transferkit.losses.cmd import CMDLoss
from transferkit.losses.grl import GradientReversal, dann_lambda, grad_reverse
from transferkit.losses.selftrain import EMATeacher, pseudo_label_loss

__all__ = ["AlignmentLoss", "CMDLoss", "CoralLoss", "DomainAdversarialLoss", "EMATeacher",
           "GradientReversal", "MMDLoss", "dann_lambda", "grad_reverse", "pseudo_label_loss"]
