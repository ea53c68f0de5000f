"""Inference-only rewrites that make CPU feature extraction faster without changing outputs."""

from __future__ import annotations

import copy
import io
import os
import warnings
from collections.abc import Callable, Sequence
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
    if not _same(ref, got, atol):
        return copy.deepcopy(model).eval()
    return folded


Batch = torch.Tensor | dict[str, torch.Tensor]


class PositionalInputs(nn.Module):
    """Wraps a module taking one batch (a tensor, or a dict of named tensors for text) so it
    takes positional tensors, as ONNX export needs; ``names`` orders the dict's keys."""

    def __init__(self, module: nn.Module, names: list[str] | None = None) -> None:
        super().__init__()
        self.module = module
        self.names = names

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.module(dict(zip(self.names, xs, strict=True)) if self.names else xs[0])


def export_onnx_module(module: nn.Module, example: Batch, target: str | Path | io.BytesIO, *,
                       output_name: str | Sequence[str],
                       dynamic_axes: dict[str, dict[int, str]] | None = None,
                       tensor_name: str = "x", opset: int = 17) -> list[str]:
    """Export ``module`` (batch -> tensor, or a tuple of tensors named by ``output_name``) to
    ONNX at ``target``; returns the input names.

    A dict batch becomes one named input per key; a tensor becomes the input ``tensor_name``.
    Without ``dynamic_axes`` only axis 0 of every input and of the outputs is dynamic.
    """
    names = list(example) if isinstance(example, dict) else None
    inputs = [example[n] for n in names] if names else [example]
    input_names = names or [tensor_name]
    outputs = [output_name] if isinstance(output_name, str) else list(output_name)
    axes = dict(dynamic_axes or {n: {0: "batch"} for n in input_names})
    for o in outputs:
        axes.setdefault(o, {0: "batch"})
    with warnings.catch_warnings():  # the TorchScript exporter warns it is legacy
        warnings.simplefilter("ignore")
        torch.onnx.export(PositionalInputs(module, names).eval(), tuple(inputs),
                          target if isinstance(target, io.BytesIO) else str(target),
                          input_names=input_names, output_names=outputs,
                          opset_version=opset, dynamic_axes=axes, dynamo=False)
    return input_names


def _same(ref: torch.Tensor, got: torch.Tensor, atol: float) -> bool:
    return got.shape == ref.shape and torch.allclose(ref, got, atol=atol, rtol=1e-3)


def _exported(module: nn.Module, example: Batch, path: Path | None,
              dynamic_axes: dict[str, dict[int, str]] | None) -> str | bytes:
    """The ONNX export of ``module``: in memory, or at ``path`` (written atomically once and
    reused by later processes)."""
    if path is None:
        buf = io.BytesIO()
        export_onnx_module(module, example, buf, output_name="features",
                           dynamic_axes=dynamic_axes)
        return buf.getvalue()
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        first = ({k: v[:1] for k, v in example.items()} if isinstance(example, dict)
                 else example[:1])
        export_onnx_module(module, first, tmp, output_name="features",
                           dynamic_axes=dynamic_axes)
        os.replace(tmp, path)
    return str(path)


def onnx_engine(module: nn.Module, example: Batch, path: Path | None, atol: float = 1e-3, *,
                check: Batch | None = None,
                dynamic_axes: dict[str, dict[int, str]] | None = None,
                ) -> Callable[[Batch], torch.Tensor] | None:
    """An ONNX Runtime session running ``module`` on batches like ``example``, or None.

    With a ``path`` the export is written there atomically and reused by later processes;
    without one it stays in memory (cheap exports, weights that change). The session's output
    is checked against ``module`` on ``check`` (default ``example``; give a batch of another
    shape to check the dynamic axes); None (use PyTorch) if onnxruntime is missing, export
    fails, or outputs differ by more than ``atol``.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    module = module.eval()
    names = list(example) if isinstance(example, dict) else ["x"]  # export_onnx_module's
    try:
        model = _exported(module, example, path, dynamic_axes)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, torch.get_num_threads())
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # any export/runtime failure: fall back to PyTorch
        warnings.warn(f"ONNX Runtime engine unavailable, using PyTorch ({exc})", stacklevel=2)
        return None

    def arr(t: torch.Tensor) -> np.ndarray:
        a = t.detach().cpu().contiguous().numpy()
        return a if a.dtype == np.int64 else a.astype(np.float32, copy=False)

    def run(x: Batch) -> torch.Tensor:
        feed = ({n: arr(x[n]) for n in names} if isinstance(x, dict) else {names[0]: arr(x)})
        return torch.from_numpy(session.run(None, feed)[0])

    for batch in (example,) if check is None else (example, check):
        with torch.inference_mode():
            ref = module(batch)
        try:
            got = run(batch)
        except Exception:  # a shape the export did not generalise to
            return None
        if not _same(ref, got, atol):
            return None
    return run
