"""The domain-adaptation methods by name: what ``--method`` accepts and how a combination such
as ``dann+self-train`` reads; and the label-free selection criteria."""

from __future__ import annotations

from typing import Any

from transferkit.losses import ALIGNMENTS

METHODS = ("source-only", "dann", "coral", "mmd", "self-train", "fixmatch", "reweight",
           "tradaboost")
SELECT = {"source-val": ("source_val_accuracy", "max"), "im": ("target_im", "max")}


def parse_method(method: str) -> dict[str, Any]:
    """``"dann+self-train"`` -> {"align": "dann", "self_train": "pseudo", "reweight": False}."""
    parts = [p.strip() for p in str(method).split("+") if p.strip()]
    unknown = [p for p in parts if p not in METHODS]
    if unknown or not parts:
        raise ValueError(f"--method {method!r}: unknown {', '.join(map(repr, unknown)) or ''}; "
                         f"choose from {', '.join(METHODS)}, combined with '+' (e.g. "
                         f"dann+self-train)")
    aligns = [p for p in parts if p in ALIGNMENTS]
    selfs = [p for p in parts if p in ("self-train", "fixmatch")]
    if len(aligns) > 1 or len(selfs) > 1:
        raise ValueError(f"--method {method!r}: combine at most one of dann/coral/mmd with at "
                         f"most one of self-train/fixmatch")
    if ("source-only" in parts or "tradaboost" in parts) and len(parts) > 1:
        raise ValueError(f"--method {method!r}: source-only and tradaboost stand alone")
    return {"align": aligns[0] if aligns else None,
            "self_train": {"self-train": "pseudo", "fixmatch": "fixmatch"}.get(
                selfs[0]) if selfs else None,
            "reweight": "reweight" in parts, "tradaboost": "tradaboost" in parts,
            "source_only": parts == ["source-only"]}
