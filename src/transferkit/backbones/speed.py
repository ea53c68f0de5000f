"""Inference-only rewrites that make CPU feature extraction faster without changing outputs."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, module)


def fold_batchnorm(model: nn.Module, example: torch.Tensor, atol: float = 1e-3) -> nn.Module:
    """A copy of an eval-mode model with each BatchNorm folded into the conv before it.

    A Conv2d immediately followed (in registration order) by a BatchNorm2d is fused; timm's
    BatchNormAct2d keeps its activation. The result is checked against the original on
    ``example``; if outputs differ by more than ``atol`` the unfolded copy is returned.
    """
    folded = copy.deepcopy(model).eval()
    prev: tuple[str, nn.Conv2d] | None = None
    for name, mod in list(folded.named_modules()):
        if isinstance(mod, nn.Conv2d):
            prev = (name, mod)
            continue
        if isinstance(mod, nn.BatchNorm2d) and prev is not None and mod.track_running_stats:
            conv_name, conv = prev
            if conv.out_channels == mod.num_features:
                _set(folded, conv_name, fuse_conv_bn_eval(conv, mod))
                drop = getattr(mod, "drop", None)
                act = getattr(mod, "act", None)
                if act is not None:  # timm BatchNormAct2d: keep dropout + activation
                    _set(folded, name, nn.Sequential(drop or nn.Identity(), act))
                else:
                    _set(folded, name, nn.Identity())
        prev = None
    with torch.inference_mode():
        ref = model(example)
        got = folded(example)
    if ref.shape != got.shape or not torch.allclose(ref, got, atol=atol, rtol=1e-3):
        return copy.deepcopy(model).eval()
    return folded
