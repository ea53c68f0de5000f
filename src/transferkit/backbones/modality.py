"""Cheap checks every command makes before anything heavy: does the backbone read the data's
modality (image, text, audio)? One message for every command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transferkit.errors import BackboneError

#: the default backbone of each modality (and the one suggested)
DEFAULTS = {"image": "efficientnet_lite0", "text": "minilm", "audio": "speech_embedding"}
#: the default of image estimators and commands
IMAGE_BACKBONE = DEFAULTS["image"]


def backbone_modality(backbone: Any, arch: str | None = None) -> str | None:
    """The modality a backbone reads ("image", "text", "audio"), from its name alone (no
    weights are loaded); None when it cannot be told cheaply."""
    if hasattr(backbone, "modality"):
        return str(backbone.modality)
    from transferkit.backbones.registry import REGISTRY, resolve_backbone

    try:
        kind, value = resolve_backbone(str(backbone), arch)
    except BackboneError:
        return None  # the real build says what is wrong with the name
    if kind == "registry":
        return REGISTRY[value].modality
    return {"timm": "image", "file": "image", "clip": "image", "hub": "text",
            "dir": "text"}.get(kind)


def check_modality(backbone: Any, modality: str, source: Any, *, arch: str | None = None,
                   option: str | None = "--backbone") -> None:
    """A BackboneError when ``backbone`` does not read ``modality`` data (from ``source``);
    ``option``: the option choosing the backbone (None: a saved run's, nothing to choose)."""
    reads = backbone_modality(backbone, arch)
    if reads is None or reads == modality:
        return
    name = getattr(backbone, "name", backbone)
    suggest = DEFAULTS.get(modality)
    where = Path(str(source)) if source is not None else "the data"
    if option is None:
        raise BackboneError(f"{where}: {modality} data, but this run's backbone {str(name)!r} "
                            f"reads {reads}; use a run trained on {modality} data")
    hint = f" (e.g. {option} {suggest}; 'transferkit models' lists them)" if suggest else ""
    raise BackboneError(f"{where}: {modality} data, but backbone {str(name)!r} reads "
                        f"{reads}; choose a backbone for {modality}{hint}")


def default_backbone(modality: str) -> str:
    """The backbone a command uses for ``modality`` data when none is named."""
    return DEFAULTS.get(modality, DEFAULTS["image"])
