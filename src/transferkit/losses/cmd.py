"""Central moment discrepancy (CMD; Zellinger et al., ICLR 2017): the distance between the
means of the source and target features plus the distances between their central moments
of order 2..K, each taken per feature. No kernel and no bandwidth; zero when the batches
agree in every moment up to K."""

from __future__ import annotations

import torch

from transferkit.losses.alignment import AlignmentLoss, _normalised


class CMDLoss(AlignmentLoss):
    """``||E s - E t|| + sum_k ||c_k(s) - c_k(t)||`` for k = 2..``moments``, c_k the
    per-feature central moments (source rows weighted), features scaled by
    ``1 / span`` first (the paper assumes features in an interval of width ``span``)."""

    name = "cmd_loss"

    def __init__(self, moments: int = 5, span: float = 1.0) -> None:
        super().__init__()
        if moments < 1 or span <= 0:
            raise ValueError(f"CMD needs moments >= 1 and span > 0, got {moments}, {span}")
        self.moments = int(moments)
        self.span = float(span)

    def forward(self, source: torch.Tensor, target: torch.Tensor,
                source_weights: torch.Tensor | None = None,
                coeff: float = 1.0) -> dict[str, torch.Tensor]:
        s, t = source.float() / self.span, target.float() / self.span
        ws = _normalised(source_weights, len(s), s)
        wt = _normalised(None, len(t), t)
        ms, mt = ws @ s, wt @ t
        loss = (ms - mt).norm()
        cs, ct = s - ms, t - mt
        for k in range(2, self.moments + 1):
            loss = loss + (ws @ cs.pow(k) - wt @ ct.pow(k)).norm()
        return {"loss": loss}
