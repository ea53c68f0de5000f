"""The speech-embedding encoder rebuilt in PyTorch from its shipped ONNX graph (its own
weights, BatchNorm folded in), and described as plain JSON so a saved run rebuilds it without
the ONNX file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from transferkit.errors import BackboneError


class _Floor(nn.Module):
    """max(x, value): the encoder's clipped activation."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = float(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp_min(self.value)


def encoder_from_onnx(path: Path) -> nn.Sequential:
    """The embedding model as a PyTorch ``Sequential`` of six stages (split at its max-pools),
    weights copied from the ONNX graph; input [N, 1, 76, 32], output [N, 96, 1, 1]."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    stages: list[nn.Sequential] = []
    current: list[nn.Module] = []
    for node in model.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv":
            w = torch.as_tensor(inits[node.input[1]].copy())
            b = inits.get(node.input[2]) if len(node.input) > 2 else None
            pads = list(attrs.get("pads", [0, 0, 0, 0]))
            if pads[:2] != pads[2:]:
                raise BackboneError(f"{path}: asymmetric padding {pads} is not supported")
            conv = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]),
                             stride=tuple(attrs.get("strides", [1, 1])),
                             padding=tuple(pads[:2]), bias=b is not None)
            with torch.no_grad():
                conv.weight.copy_(w)
                if b is not None:
                    conv.bias.copy_(torch.as_tensor(b.copy()))
            current.append(conv)
        elif node.op_type == "LeakyRelu":
            current.append(nn.LeakyReLU(float(attrs.get("alpha", 0.01))))
        elif node.op_type == "Max":
            current.append(_Floor(float(inits[node.input[1]].ravel()[0])))
        elif node.op_type == "MaxPool":
            current.append(nn.MaxPool2d(tuple(attrs["kernel_shape"]),
                                        tuple(attrs.get("strides", attrs["kernel_shape"]))))
            stages.append(nn.Sequential(*current))
            current = []
        elif node.op_type != "Reshape":
            raise BackboneError(f"{path}: unexpected operation {node.op_type}")
    stages.append(nn.Sequential(*current))
    return nn.Sequential(*stages)


def describe_encoder(encoder: nn.Sequential) -> list[list[dict[str, Any]]]:
    """The encoder's layers as JSON (a saved model rebuilds it without the package)."""
    out = []
    for stage in encoder:
        layers = []
        for m in stage:
            if isinstance(m, nn.Conv2d):
                layers.append({"conv": [m.in_channels, m.out_channels, list(m.kernel_size),
                                        list(m.padding), m.bias is not None]})
            elif isinstance(m, nn.LeakyReLU):
                layers.append({"leaky": m.negative_slope})
            elif isinstance(m, _Floor):
                layers.append({"floor": m.value})
            elif isinstance(m, nn.MaxPool2d):
                layers.append({"pool": [list(np.atleast_1d(m.kernel_size)),
                                        list(np.atleast_1d(m.stride))]})
        out.append(layers)
    return json_safe(out)


def json_safe(x: Any) -> Any:
    """Numbers as plain ints and floats."""
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, np.generic):
        return x.item()
    return x


def build_encoder(description: list[list[dict[str, Any]]]) -> nn.Sequential:
    """An encoder of the described layers (weights to be loaded)."""
    stages = []
    for layers in description:
        mods: list[nn.Module] = []
        for layer in layers:
            if "conv" in layer:
                cin, cout, k, pad, bias = layer["conv"]
                mods.append(nn.Conv2d(cin, cout, tuple(k), padding=tuple(pad), bias=bias))
            elif "leaky" in layer:
                mods.append(nn.LeakyReLU(float(layer["leaky"])))
            elif "floor" in layer:
                mods.append(_Floor(float(layer["floor"])))
            else:
                k, stride = layer["pool"]
                mods.append(nn.MaxPool2d(tuple(k), tuple(stride)))
        stages.append(nn.Sequential(*mods))
    return nn.Sequential(*stages)
