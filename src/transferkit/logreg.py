"""Multinomial logistic regression fitted by full-batch L-BFGS in PyTorch, on any device.

The objective is scikit-learn's ``LogisticRegression`` (lbfgs, multinomial): ``C`` times the
(weighted) sum of the cross-entropies plus half the squared norm of the weights, the
intercept not penalised. It is convex, so both solvers reach the same optimum; this one runs
where the features are, so a probe on a GPU does not wait for the CPU (the probe uses it on
a GPU and scikit-learn on the CPU).
"""

from __future__ import annotations

import numpy as np
import torch


def fit_logreg(x: np.ndarray | torch.Tensor, y: np.ndarray, num_classes: int, C: float,
               device: torch.device, *, tol: float = 1e-4, max_iter: int = 500,
               sample_weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(coef [num_classes, d], intercept [num_classes]) of the fitted model, as numpy."""
    xs = torch.as_tensor(x, dtype=torch.float32, device=device)
    ys = torch.as_tensor(np.asarray(y), dtype=torch.long, device=device)
    w = (torch.ones(len(ys), device=device) if sample_weight is None else
         torch.as_tensor(np.asarray(sample_weight), dtype=torch.float32, device=device))
    coef = torch.zeros(num_classes, xs.shape[1], device=device, requires_grad=True)
    bias = torch.zeros(num_classes, device=device, requires_grad=True)
    present = torch.zeros(num_classes, dtype=torch.bool, device=device)
    present[ys.unique()] = True
    opt = torch.optim.LBFGS([coef, bias], lr=1.0, max_iter=max_iter, tolerance_grad=tol,
                            tolerance_change=1e-12, history_size=20,
                            line_search_fn="strong_wolfe")
    scale = 1.0 / max(float(w.sum()), 1.0)  # the same optimum, better conditioned

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = xs @ coef.T + bias
        logits = logits.masked_fill(~present, -1e4)  # absent classes: never predicted
        ce = torch.nn.functional.cross_entropy(logits, ys, reduction="none")
        loss = scale * (C * (w * ce).sum() + 0.5 * (coef * coef).sum())
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        b = bias.masked_fill(~present, -1e4)
    return coef.detach().cpu().numpy(), b.cpu().numpy()
