"""The options several commands share, declared once (seed, output, overwrite, cache,
skipping bad files, device, precision, backbone with its per-modality default), and a way to
give a command a signature built from declarations (``fit`` builds its strategy options
from the strategy registry)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

OVERWRITE_HELP = ("Replace an existing run in --out (the new one is written beside it and "
                  "swapped in only when it has finished).")

def _device_help() -> tuple[str, str]:
    from transferkit.device import DEVICE_HELP, PRECISION_HELP

    return DEVICE_HELP, PRECISION_HELP


#: --device and --precision, declared once for every command that computes
DeviceOpt = Annotated[str, typer.Option("--device", help=_device_help()[0])]
PrecisionOpt = Annotated[str, typer.Option("--precision", help=_device_help()[1])]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Run directory to write.")]
SeedOpt = Annotated[int, typer.Option(help="Random seed (splits, initialisation, order).",
                                      min=0)]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Do not read or write the "
                                                             "feature cache.")]
SkipBadOpt = Annotated[bool, typer.Option("--skip-bad", help="Skip unreadable files (they "
                                                             "are counted in the report).")]
BackboneOpt = Annotated[str | None, typer.Option(
    help="Backbone: a name from 'transferkit models', timm:<arch>, hf:<model id>, a local "
         "weights file or text model folder (default by the data: efficientnet_lite0 for "
         "images, minilm for text, speech_embedding for audio).")]
ResumeOpt = Annotated[Path | None, typer.Option(help="Continue a killed run in this "
                                                     "directory, with its saved options.")]
OptionOpt = Annotated[list[str] | None, typer.Option(
    "--option", "-o", help="Any strategy parameter as KEY=VALUE (repeatable), e.g. -o "
                           "label_smoothing=0.1.", rich_help_panel="Strategy option")]

__all__ = [
    "OVERWRITE_HELP",
    "BackboneOpt",
    "DeviceOpt",
    "NoCacheOpt",
    "OptionOpt",
    "OutOpt",
    "OverwriteOpt",
    "Param",
    "PrecisionOpt",
    "ResumeOpt",
    "SeedOpt",
    "SkipBadOpt",
    "backbone_for",
    "with_signature",
]


@dataclass(frozen=True)
class Param:
    """One parameter of a command: its name, its ``Annotated[type, typer.Option(...)]``
    and its default."""

    name: str
    annotation: Any
    default: Any = None


F = TypeVar("F", bound=Callable[..., Any])


def with_signature(params: Sequence[Param]) -> Callable[[F], F]:
    """Give a command taking ``**options`` the signature ``params`` (what Typer reads to
    build its options), so its options can be generated rather than written out."""
    def wrap(fn: F) -> F:
        kind = inspect.Parameter.KEYWORD_ONLY
        fn.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter(p.name, kind, annotation=p.annotation, default=p.default)
             for p in params], return_annotation=None)
        fn.__annotations__ = {**{p.name: p.annotation for p in params}, "return": None}
        return fn

    return wrap


def backbone_for(backbone: str | None, data: Path | None,
                 text_column: str | None = None) -> str:
    """``backbone``, or the default backbone for ``data``'s modality (the one place that
    decides it)."""
    if backbone is not None:
        return backbone
    from transferkit.backbones.modality import default_backbone
    from transferkit.data.load import modality_of

    return default_backbone(modality_of(data, text_column) if data is not None else "image")


def require_paths(*given: tuple[str, Path | str | None]) -> None:
    """A ValueError for the first (what, path) whose path is given but does not exist."""
    for what, path in given:
        if path is not None and not Path(path).exists():
            raise ValueError(f"{path}: no such file or directory ({what})")
