"""Weight-space ensembles after fine-tuning (WiSE-FT, Wortsman et al. 2022): the kept model
is ``(1 - alpha) * start + alpha * fine-tuned``, every weight and floating-point buffer
interpolated, where ``start`` is the model the fine-tuning phase began from (the pretrained
backbone with the head trained alone, or the probe's head). ``alpha`` is fixed, or picked on
the validation data from :data:`ALPHAS`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

#: the mixing weights tried when ``wise="auto"`` (1.0 = the fine-tuned model as trained)
ALPHAS = (0.25, 0.5, 0.75, 1.0)


def parse_wise(value: Any) -> float | str | None:
    """``None``, ``"auto"`` or a mixing weight in (0, 1] (a number or its text); a
    ValueError naming the option otherwise."""
    if value is None or value == "auto":
        return value
    try:
        alpha = float(value)
    except (TypeError, ValueError):
        alpha = float("nan")
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"wise {value!r}: give 'auto' (picked on the validation data) or "
                         f"a weight of the fine-tuned model in (0, 1]")
    return alpha


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``module``'s state."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def mix(start: Mapping[str, torch.Tensor], end: Mapping[str, torch.Tensor],
        alpha: float) -> dict[str, torch.Tensor]:
    """``(1 - alpha) * start + alpha * end`` for floating-point tensors; the others (step
    counters) from ``end``."""
    return {k: torch.lerp(start[k].to(v.device, v.dtype), v, alpha)
            if v.is_floating_point() else v for k, v in end.items()}


def choose_alpha(module: nn.Module, start: Mapping[str, torch.Tensor],
                 evaluate: Callable[[], dict[str, float]],
                 alphas: tuple[float, ...] = ALPHAS) -> tuple[float, list[dict[str, float]]]:
    """Load into ``module`` the mix of ``start`` and its current weights that scores best on
    ``evaluate`` (validation accuracy, then lower loss; ties go to the smaller alpha);
    the alpha and every alpha's scores."""
    end = snapshot(module)
    rows: list[dict[str, float]] = []
    best: tuple[float, float, float] | None = None  # (accuracy, -loss, alpha)
    for alpha in sorted(alphas):
        module.load_state_dict(mix(start, end, alpha))
        metrics = evaluate()
        rows.append({"alpha": alpha, **metrics})
        key = (metrics["val_accuracy"], -metrics.get("val_loss", 0.0))
        if best is None or key > best[:2]:
            best = (*key, alpha)
    assert best is not None
    module.load_state_dict(mix(start, end, best[2]))
    return best[2], rows
