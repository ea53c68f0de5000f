"""Glyphs: an Omniglot-style few-shot set rendered from the Debian Noto fonts.

One class per character of a script; its drawings are the character rendered by the Noto
fonts that cover the script, one drawing per font and weight (sans and serif, Thin to Black,
condensed to wide: 2-4 fonts per class with fonts-noto-core alone, up to 36 with
fonts-noto-extra), each with a light random affine jitter (rotation, scale, shear, shift);
when a script has fewer fonts than drawings per class, fonts are reused with new jitter.
Base scripts (meta-training) and novel scripts (evaluation) are disjoint, so novel classes
come from scripts never seen in training.

Run: ``python -m transferkit.data.glyphs OUT [--size 28] [--per-class 20]`` writes
``OUT/base/<class>/*.png`` and ``OUT/novel/<class>/*.png``. Missing fonts: an ``error:``
line naming the Debian package, exit 2.
"""

from __future__ import annotations

import argparse
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FONT_DIR = Path("/usr/share/fonts/truetype/noto")
PACKAGE = "fonts-noto-core"  # regular and bold; fonts-noto-extra adds the other weights
# script -> (Noto family stem, first and last code point of its Unicode block)
SCRIPTS = {
    "armenian": ("Armenian", 0x0531, 0x0587), "hebrew": ("Hebrew", 0x05D0, 0x05EA),
    "devanagari": ("Devanagari", 0x0904, 0x0939), "bengali": ("Bengali", 0x0985, 0x09B9),
    "gujarati": ("Gujarati", 0x0A85, 0x0AB9), "tamil": ("Tamil", 0x0B85, 0x0BB9),
    "kannada": ("Kannada", 0x0C85, 0x0CB9), "malayalam": ("Malayalam", 0x0D05, 0x0D3A),
    "sinhala": ("Sinhala", 0x0D85, 0x0DC6), "thai": ("Thai", 0x0E01, 0x0E2E),
    "lao": ("Lao", 0x0E81, 0x0EAE), "myanmar": ("Myanmar", 0x1000, 0x102A),
    "ethiopic": ("Ethiopic", 0x1200, 0x1248), "khmer": ("Khmer", 0x1780, 0x17B3),
    "georgian": ("Georgian", 0x10D0, 0x10FA), "gurmukhi": ("Gurmukhi", 0x0A05, 0x0A39),
    "telugu": ("Telugu", 0x0C05, 0x0C39), "cherokee": ("Cherokee", 0x13A0, 0x13F4),
    "ol-chiki": ("OlChiki", 0x1C5A, 0x1C7D), "adlam": ("Adlam", 0x1E900, 0x1E943),
}
BASE_SCRIPTS = ("armenian", "hebrew", "devanagari", "bengali", "gujarati", "tamil", "kannada",
                "malayalam", "sinhala", "thai", "lao", "myanmar", "ethiopic", "khmer")
NOVEL_SCRIPTS = ("georgian", "gurmukhi", "telugu", "cherokee", "ol-chiki", "adlam")


class FontsMissing(RuntimeError):
    """The Noto fonts are not installed (names the Debian package)."""


@dataclass
class GlyphSet:
    """Rendered glyphs: images (N x size x size, uint8, ink bright), class ids, class names
    (``<script>-<code point>``), each class's script, and the fonts of each class."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    scripts: list[str]
    fonts: dict[str, list[str]]


def script_fonts(script: str, font_dir: Path = FONT_DIR) -> list[Path]:
    """The Noto fonts that draw ``script`` (sans/serif, every weight installed)."""
    stem = SCRIPTS[script][0]
    found = sorted(p for fam in ("NotoSans", "NotoSerif")
                   for p in font_dir.glob(f"{fam}{stem}-*.[ot]tf")
                   if p.stem.split("-")[0] == f"{fam}{stem}")
    if not found:
        raise FontsMissing(f"no Noto font for the {script} script in {font_dir} (install the "
                           f"Debian package {PACKAGE}: apt-get install {PACKAGE})")
    return found


def characters(script: str, fonts: Sequence[Path], limit: int | None = None) -> list[str]:
    """Letters of ``script``'s block that every one of ``fonts`` covers (at most ``limit``)."""
    from fontTools.ttLib import TTFont

    cmaps = [set(TTFont(str(f), lazy=True).getBestCmap()) for f in fonts]
    _, lo, hi = SCRIPTS[script]
    out = [chr(c) for c in range(lo, hi + 1)
           if unicodedata.category(chr(c)) in ("Lo", "Lu", "Ll") and all(c in m for m in cmaps)]
    return out[:limit] if limit else out


def render(ch: str, font_path: Path, size: int, rng: np.random.Generator | None,
           scale: int = 3) -> np.ndarray:
    """``ch`` drawn by one font, centred and scaled so that its longer side fills 80% of the
    square, ink bright on black, ``size`` pixels square; with
    ``rng`` a light random affine jitter (±10°, scale 0.9-1.1, shear ±0.15, shift ±6%)."""
    from PIL import Image, ImageDraw, ImageFont

    big = size * scale
    font = ImageFont.truetype(str(font_path), big)
    canvas = Image.new("L", (2 * big, 2 * big), 0)
    ImageDraw.Draw(canvas).text((big // 2, big // 2), ch, fill=255, font=font)
    box = canvas.getbbox() or (0, 0, 1, 1)
    glyph = canvas.crop(box)
    fit = 0.8 * big / max(glyph.size)  # the glyph's longer side fills 80% of the square
    glyph = glyph.resize((max(1, round(glyph.size[0] * fit)), max(1, round(glyph.size[1] * fit))),
                         Image.Resampling.LANCZOS)
    img = Image.new("L", (big, big), 0)
    img.paste(glyph, ((big - glyph.size[0]) // 2, (big - glyph.size[1]) // 2))
    if rng is not None:
        ang, sc = np.deg2rad(rng.uniform(-10, 10)), rng.uniform(0.9, 1.1)
        sh, (tx, ty) = rng.uniform(-0.15, 0.15), rng.uniform(-0.06, 0.06, 2) * big
        a = np.array([[np.cos(ang), -np.sin(ang) + sh], [np.sin(ang), np.cos(ang)]]) * sc
        inv = np.linalg.inv(a)
        c = np.array([big / 2, big / 2])
        off = c - inv @ (c + np.array([tx, ty]))
        img = img.transform((big, big), Image.Transform.AFFINE,
                            (inv[0, 0], inv[0, 1], off[0], inv[1, 0], inv[1, 1], off[1]),
                            resample=Image.Resampling.BILINEAR)
    return np.asarray(img.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def build(scripts: Sequence[str], *, size: int = 28, per_class: int = 20,
          max_chars: int | None = 40, seed: int = 0, ways: int | None = None,
          font_dir: Path = FONT_DIR) -> GlyphSet:
    """Glyphs of ``scripts``: ``per_class`` drawings per character, one per font of its
    script in a random order (fonts reused when too few), each jittered. ``ways``: a script
    with fewer characters is an error naming it."""
    rng = np.random.default_rng(seed)
    images, labels, names, of_script, fonts = [], [], [], [], {}
    for script in scripts:
        if script not in SCRIPTS:
            raise ValueError(f"unknown script {script!r}; choose from {', '.join(SCRIPTS)}")
        paths = script_fonts(script, font_dir)
        chars = characters(script, paths, max_chars)
        if ways is not None and len(chars) < ways:
            raise ValueError(f"script {script!r} has {len(chars)} characters covered by "
                             f"its fonts, fewer than --ways {ways}")
        fonts[script] = [p.name for p in paths]
        for ch in chars:
            order = rng.permutation(len(paths))  # every font once before any twice
            for k in range(per_class):
                images.append(render(ch, paths[order[k % len(paths)]], size, rng))
                labels.append(len(names))
            names.append(f"{script}-{ord(ch):04x}")
            of_script.append(script)
    return GlyphSet(np.stack(images), np.asarray(labels), names, of_script, fonts)


def write(glyphs: GlyphSet, out: Path) -> None:
    """Each class a folder of PNGs under ``out``."""
    from PIL import Image

    for c, name in enumerate(glyphs.class_names):
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        for k, i in enumerate(np.flatnonzero(glyphs.labels == c)):
            Image.fromarray(glyphs.images[i]).save(d / f"{k:02d}.png")


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: build base and novel glyph sets as class folders."""
    ap = argparse.ArgumentParser(description="Render an Omniglot-style glyph set from the "
                                             "Noto fonts (base and novel scripts).")
    ap.add_argument("out", type=Path)
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--max-chars", type=int, default=40)
    ap.add_argument("--ways", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--font-dir", type=Path, default=FONT_DIR)
    args = ap.parse_args(argv)
    try:
        for part, scripts in (("base", BASE_SCRIPTS), ("novel", NOVEL_SCRIPTS)):
            g = build(scripts, size=args.size, per_class=args.per_class,
                      max_chars=args.max_chars, seed=args.seed, ways=args.ways,
                      font_dir=args.font_dir)
            write(g, args.out / part)
            print(f"{part}: {len(g.class_names)} classes from {len(scripts)} scripts, "
                  f"{args.per_class} drawings each; fonts per class: "
                  + ", ".join(f"{s} {len(f)}" for s, f in g.fonts.items()))
    except (FontsMissing, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
