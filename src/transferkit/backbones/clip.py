"""Image-text (CLIP-style) models from ``open_clip``: images and texts embedded in one space,
so a class can be recognised from its name or description alone.

Names: ``clip:<arch>`` (the architecture's first pretrained tag; needs the network once),
``clip:<arch>@<tag>``, ``clip:<arch>@/path/to/weights`` (.bin/.pt/.safetensors) and
``clip:local-dir:/path`` (a folder with ``open_clip_config.json`` and the weights). No CLIP
weights can be installed offline: without network a hub name is an error that says how to
pass a local file. ``clip:<arch>@random`` builds random weights (tests, architecture checks).
Saved runs hold the whole model (both towers) and its config, so they load offline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transferkit.backbones.base import Backbone, Stage
from transferkit.data.images import load_image
from transferkit.device import move, where
from transferkit.errors import BackboneError


def _open_clip() -> Any:
    try:
        import open_clip
    except ImportError:
        raise BackboneError("CLIP backbones need the 'open_clip_torch' package "
                            "(pip install open_clip_torch)") from None
    return open_clip


class ClipBackbone(Backbone):
    """An open_clip model: ``extract`` gives normalised image embeddings; ``text_features``
    normalised text embeddings of the same space."""

    modality = "image"
    default_batch_size = 32

    def __init__(self, model: torch.nn.Module, arch: str, config: dict[str, Any],
                 name: str) -> None:
        open_clip = _open_clip()
        self.model = model.eval()
        self.arch, self.config, self.name = arch, config, name
        self.feature_dim = int(config["embed_dim"])
        pp = dict(getattr(model.visual, "preprocess_cfg", {}) or {})
        size = pp.get("size", config["vision_cfg"].get("image_size", 224))
        size = int(size[0] if isinstance(size, (list, tuple)) else size)
        mean = list(pp.get("mean", open_clip.OPENAI_DATASET_MEAN))
        std = list(pp.get("std", open_clip.OPENAI_DATASET_STD))
        self.data_config = {"input_size": [3, size, size], "mean": mean, "std": std,
                            "interpolation": "bicubic", "crop_pct": 1.0, "crop_mode": "center"}
        self.transform = open_clip.image_transform(size, is_train=False, mean=mean, std=std)
        try:
            self.tokenizer = open_clip.get_tokenizer(arch)
        except Exception:  # a saved run whose local-dir is gone: CLIP's bundled BPE
            self.tokenizer = open_clip.SimpleTokenizer(
                context_length=int(config["text_cfg"].get("context_length", 77)))
        self._cache_key: str | None = None

    def prepare(self, item: Any) -> torch.Tensor:
        """An RGB image, resized and centre-cropped, normalised as the model was trained."""
        return self.transform(load_image(item, self.data_config["input_size"][-1]))

    def forward_features(self, batch: torch.Tensor) -> torch.Tensor:
        """Normalised image embeddings."""
        return self.model.encode_image(batch, normalize=True)

    @torch.inference_mode()
    def text_features(self, texts: list[str]) -> np.ndarray:
        """Normalised text embeddings [len(texts), embed_dim] (the same space as images)."""
        self.model.eval()
        tokens = move(self.tokenizer(texts), where(self.model))
        return self.model.encode_text(tokens, normalize=True).float().cpu().numpy()

    def spec(self) -> dict[str, Any]:
        """Architecture config (rebuilds the model offline) and preprocessing."""
        return {"type": "clip", "name": self.name, "arch": self.arch, "config": self.config,
                "data_config": self.data_config}

    def stages(self) -> list[Stage]:
        """None: a CLIP model is used frozen here (probe, zero-shot)."""
        return []


def clip_from_name(value: str) -> ClipBackbone:
    """``<arch>``, ``<arch>@<tag|file|random>`` or ``local-dir:<folder>`` (see module)."""
    open_clip = _open_clip()
    if value.startswith("local-dir:"):
        folder = Path(value.removeprefix("local-dir:"))
        if not (folder / "open_clip_config.json").is_file():
            raise BackboneError(f"{folder}: no open_clip_config.json (a clip:local-dir: folder "
                                f"holds the config and open_clip_pytorch_model.bin or "
                                f".safetensors)")
        cfg = json.loads((folder / "open_clip_config.json").read_text())["model_cfg"]
        model = open_clip.create_model(value)
        return ClipBackbone(model, value, cfg, f"clip:{value}")
    arch, _, weights = value.partition("@")
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise BackboneError(f"unknown CLIP architecture {arch!r}; e.g. ViT-B-32 "
                            f"(open_clip.list_models() lists them)")
    if weights == "random":
        model = open_clip.create_model(arch, pretrained=None)
        return ClipBackbone(model, arch, cfg, f"clip:{arch}@random")
    if weights and Path(weights).exists():
        if not Path(weights).is_file():
            raise BackboneError(f"{weights}: not a weights file")
        model = open_clip.create_model(arch, pretrained=weights)
        return ClipBackbone(model, arch, cfg, f"clip:{arch}")
    tags = open_clip.list_pretrained_tags_by_model(arch)
    tag = weights or (tags[0] if tags else "")
    if tag not in tags:
        raise BackboneError(f"clip:{arch}@{weights}: no such file, and not a pretrained tag of "
                            f"{arch} ({', '.join(tags) or 'none'})")
    try:
        path = open_clip.download_pretrained(open_clip.get_pretrained_cfg(arch, tag))
    except Exception as exc:  # offline: the hub or URL cannot be reached
        raise BackboneError(
            f"CLIP weights {arch}/{tag} are not on this machine and cannot be downloaded "
            f"({type(exc).__name__}). Download them once where there is network (open_clip: "
            f"create_model_and_transforms('{arch}', pretrained='{tag}') saves the file in the "
            f"Hugging Face cache), then pass --backbone clip:{arch}@/path/to/"
            f"open_clip_pytorch_model.bin, or clip:local-dir:/path/to/folder") from None
    model = open_clip.create_model(arch, pretrained=path)
    return ClipBackbone(model, arch, cfg, f"clip:{arch}@{tag}")


def clip_from_spec(spec: dict[str, Any], state: dict[str, torch.Tensor]) -> ClipBackbone:
    """Rebuild a saved CLIP backbone offline: the config's architecture, the saved weights."""
    open_clip = _open_clip()
    arch = str(spec["arch"])
    if arch.startswith("local-dir:") or open_clip.get_model_config(arch) is None:
        from open_clip.model import CLIP

        model = CLIP(**spec["config"])
    else:
        model = open_clip.create_model(arch, pretrained=None)
    model.load_state_dict(state, strict=True)
    return ClipBackbone(model, arch, dict(spec["config"]), str(spec["name"]))
