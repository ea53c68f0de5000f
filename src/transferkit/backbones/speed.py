"""Inference-only rewrites that make CPU feature extraction faster without changing outputs."""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
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


def onnx_engine(module: nn.Module, example: torch.Tensor, path: Path,
                atol: float = 1e-3) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """An ONNX Runtime session running ``module`` (exported once to ``path``), or None.

    The export is written atomically and reused by later processes. The session's output is
    checked against ``module`` on ``example``; None (use PyTorch) if onnxruntime is missing,
    export fails, or outputs differ by more than ``atol``.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    try:
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(module.eval(), (example[:1],), str(tmp), input_names=["x"],
                                  output_names=["features"], opset_version=17,
                                  dynamic_axes={"x": {0: "batch"}, "features": {0: "batch"}},
                                  dynamo=False)
            os.replace(tmp, path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, torch.get_num_threads())
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # any export/runtime failure: fall back to PyTorch
        warnings.warn(f"ONNX Runtime engine unavailable, using PyTorch ({exc})", stacklevel=2)
        return None

    def run(x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().cpu().contiguous().numpy().astype(np.float32, copy=False)
        return torch.from_numpy(session.run(None, {"x": arr})[0])

    with torch.inference_mode():
        ref = module(example)
    got = run(example)
    if got.shape != ref.shape or not torch.allclose(ref, got, atol=atol, rtol=1e-3):
        return None
    return run
