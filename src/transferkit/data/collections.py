"""Real offline image collections as benchmark tasks: Debian's clip art and icon themes.

Both builders write an image folder with ``train/``, ``val/`` and ``test/`` (one sub-folder
per class, so ``load_data`` reads it as a split) and a ``manifest.json`` saying what was
used, what was skipped and why. The collections are read from installed Debian packages at
run time; nothing of them is shipped with transferkit.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from transferkit.errors import DataError

CLIPART_ROOT = Path("/usr/share/openclipart/png")
# Ten object categories of openclipart-png with 48+ images each (the list): colour
# objects in small classes, the regime of the seeds' first case study.
CLIPART_CATEGORIES = ("food/fruit", "animals/mammals", "animals/birds", "animals/bugs",
                      "transportation/vehicles", "recreation/music", "recreation/sports",
                      "tools", "food/desserts", "computer/hardware")
MAX_PIXELS = 40_000_000  # larger files are decompression bombs here (some are ~600 Mpx)


class MissingPackageError(DataError):
    """A collection whose Debian package is not installed."""

    def __init__(self, package: str, path: Path) -> None:
        self.package = package
        super().__init__(f"{path} not found: install the Debian package {package} "
                         f"(apt-get install {package})")


def on_white(img: Image.Image, size: int) -> Image.Image:
    """The image composited on white (alpha respected), scaled to fit and centred in a
    ``size`` x ``size`` square."""
    rgba = img.convert("RGBA")
    w, h = rgba.size
    scale = size / max(w, h)
    rgba = rgba.resize((max(1, round(w * scale)), max(1, round(h * scale))),
                       Image.Resampling.LANCZOS)
    canvas = Image.new("RGBA", (size, size), (255, 255, 255, 255))
    canvas.alpha_composite(rgba, ((size - rgba.width) // 2, (size - rgba.height) // 2))
    return canvas.convert("RGB")


def open_bounded(path: Path, max_pixels: int = MAX_PIXELS) -> tuple[Image.Image | None, str]:
    """(image, "") or (None, why it was skipped): decompression bombs and unreadable files."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(path)
            if img.width * img.height > max_pixels:
                return None, f"decompression bomb: {img.width}x{img.height} px"
            img.load()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return None, f"unreadable: {exc}"
    return img, ""


def split_counts(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """(train, val, test) counts of ``n`` items for (val, test) fractions; each at least 1."""
    n_val = max(1, round(n * fractions[0]))
    n_test = max(1, round(n * fractions[1]))
    return n - n_val - n_test, n_val, n_test


def clipart_task(out: str | Path, *, categories: Sequence[str] = CLIPART_CATEGORIES,
                 per_class: int | None = None, size: int = 128,
                 fractions: Sequence[float] = (0.2, 0.25), seed: int = 0,
                 root: str | Path = CLIPART_ROOT,
                 max_pixels: int = MAX_PIXELS) -> dict[str, Any]:
    """A balanced clip-art classification task from ``openclipart-png``.

    Each category folder (its PNGs, not its sub-folders) is one class; every class gets
    ``per_class`` seeded random images (default: the smallest category's usable count),
    composited on white at ``size`` px, split into train / val / test by ``fractions``
    (val, test). Files over ``max_pixels`` (decompression bombs) are skipped and listed.
    Returns the manifest (also written to ``out/manifest.json``).
    """
    root = Path(root)
    if not root.is_dir():
        raise MissingPackageError("openclipart-png", root)
    if len(categories) < 2:
        raise DataError("clip art: at least 2 categories are needed")
    skipped: list[dict[str, str]] = []
    usable: dict[str, list[tuple[Path, Image.Image]]] = {}
    for cat in categories:
        folder = root / cat
        files = sorted(folder.glob("*.png")) if folder.is_dir() else []
        if not files:
            raise DataError(f"clip art: category {cat!r} has no PNGs under {folder}")
        usable[cat] = []
        for f in files:
            img, why = open_bounded(f, max_pixels)
            if img is None:
                skipped.append({"file": str(f), "reason": why})
            else:
                usable[cat].append((f, img))
    smallest = min(len(v) for v in usable.values())
    n = per_class or smallest
    short = {c: len(v) for c, v in usable.items() if len(v) < n}
    if short:
        raise DataError("clip art: too few usable images for --per-class "
                        f"{n}: " + ", ".join(f"{c} ({k})" for c, k in short.items()))
    n_train, n_val, n_test = split_counts(n, fractions)
    if n_train < 1:
        raise DataError(f"clip art: {n} images per class leave none for training")
    rng = np.random.default_rng(seed)
    out = Path(out)
    counts: dict[str, dict[str, int]] = {}
    for cat, items in usable.items():
        label = cat.replace("/", "_")
        pick = [items[i] for i in rng.permutation(len(items))[:n]]
        parts = {"train": pick[:n_train], "val": pick[n_train:n_train + n_val],
                 "test": pick[n_train + n_val:]}
        for role, chosen in parts.items():
            (out / role / label).mkdir(parents=True, exist_ok=True)
            for f, img in chosen:
                on_white(img, size).save(out / role / label / f"{f.stem}.png")
        counts[label] = {role: len(v) for role, v in parts.items()}
    manifest = {"collection": "openclipart-png", "root": str(root), "size": size,
                "per_class": n, "seed": seed, "classes": counts, "skipped": skipped,
                "split": {"train": n_train, "val": n_val, "test": n_test}}
    write_manifest(out, manifest)
    return manifest


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """``out/manifest.json``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
