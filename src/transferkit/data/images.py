"""Reading images from files or arrays into RGB PIL images, whatever their mode or bit depth."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from transferkit.errors import DataError, ImageReadError

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)


def is_image_file(path: Path) -> bool:
    """True when the file name has a known image extension."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; transparency is composited onto white."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if mode == "F":
            lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
            arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        else:
            # 16-bit (or 32-bit integer) greyscale: scale the full 16-bit range to 8 bits.
            arr = arr / 257.0
        arr8 = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("LA", "PA", "La"):
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "RGBa"):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img.convert("RGBA")).convert("RGB")
    return img.convert("RGB")


def array_to_image(arr: np.ndarray, where: str = "array") -> Image.Image:
    """Turn an HxW, HxWx1, HxWx3 or HxWx4 array (uint8, uint16 or float in [0, 1]) into RGB."""
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[2] not in (1, 3, 4):
        a = np.transpose(a, (1, 2, 0))  # CHW -> HWC
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise DataError(f"{where}: expected an image array of shape HxW or HxWxC (C=1,3,4), "
                        f"got shape {a.shape}")
    if a.dtype == np.uint8:
        pass
    elif a.dtype == np.uint16:
        a = np.rint(a / 257.0).astype(np.uint8)
    elif a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise DataError(f"{where}: image array contains NaN or infinite values")
        hi = float(a.max()) if a.size else 0.0
        a = np.clip(a * 255.0 if hi <= 1.0 else a, 0, 255)
        a = np.rint(a).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.integer):
        a = np.clip(a, 0, 255).astype(np.uint8)
    else:
        raise DataError(f"{where}: unsupported image array dtype {a.dtype}")
    return _to_rgb(Image.fromarray(a))


MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485  # Pillow's decompression-bomb limit


MAX_ASPECT = 8  # longer side : shorter side kept when a caller gives the size it needs


def bound_aspect(img: Image.Image, max_side: int | None) -> Image.Image:
    """``img`` with its longer side centre-cropped to ``MAX_ASPECT`` times the shorter one
    when a caller gives the size it needs (``max_side``): resizing the shorter side of a
    1 x 20000 strip to 224 would otherwise make a 4.5-gigapixel image. Models centre-crop a
    square in the end, so only the far ends of such strips are left out."""
    w, h = img.size
    if not max_side or max(w, h) <= MAX_ASPECT * max(1, min(w, h)):
        return img
    if w > h:
        keep = MAX_ASPECT * max(1, h)
        return img.crop(((w - keep) // 2, 0, (w - keep) // 2 + keep, h))
    keep = MAX_ASPECT * max(1, w)
    return img.crop((0, (h - keep) // 2, w, (h - keep) // 2 + keep))


def load_image(item: Any, max_side: int | None = None) -> Image.Image:
    """Load a path, PIL image or array as an RGB PIL image; a bad file raises ImageReadError.

    ``max_side``: the size the caller needs (the shorter side after any resize). A file much
    larger than that is decoded at reduced scale where the format allows it (JPEG) and
    reduced right after decoding otherwise, and an extreme strip is cropped to an aspect of
    at most 8:1 (:func:`bound_aspect`), so memory stays near the file's own pixel count,
    never a float copy of it, nor a resized copy many times larger. Images over
    ``MAX_PIXELS`` (89.5 megapixels) are refused as possible decompression bombs.
    """
    if isinstance(item, Image.Image):
        return _to_rgb(bound_aspect(item, max_side))
    if isinstance(item, np.ndarray):
        return bound_aspect(array_to_image(item), max_side)
    path = Path(item)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if max_side and min(img.size) > 4 * max_side:
                    img.draft("RGB", (2 * max_side, 2 * max_side))  # JPEG: decode smaller
                img.load()  # forces a full decode, so truncated files fail here
                if max_side and min(img.size) > 4 * max_side:
                    img = img.reduce(min(img.size) // (2 * max_side))
                img = ImageOps.exif_transpose(img)
                return _to_rgb(bound_aspect(img, max_side))
    except FileNotFoundError:
        raise ImageReadError(str(path), "file not found") from None
    except UnidentifiedImageError:
        raise ImageReadError(str(path), "not an image file PIL can identify") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError(str(path), f"too large ({exc}); images of up to "
                             f"{MAX_PIXELS / 1e6:.1f} megapixels are read: resize it first"
                             ) from None
    except (OSError, ValueError, SyntaxError, MemoryError) as exc:  # truncated, corrupt
        raise ImageReadError(str(path), str(exc) or type(exc).__name__) from None


def thumbnail_image(item: Any) -> Image.Image:
    """An item's image, decoded no larger than a report thumbnail needs."""
    return load_image(item, max_side=256)


def item_key(item: Any) -> str:
    """A content hash of one item (a Path's file bytes, an array, a PIL image or a text string).

    A ``str`` is hashed as text; pass image files as ``pathlib.Path``.
    """
    h = hashlib.blake2b(digest_size=20)
    if isinstance(item, np.ndarray):
        a = np.ascontiguousarray(item)
        h.update(f"array:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    elif isinstance(item, str):
        h.update(b"text:" + item.encode("utf-8"))
    elif isinstance(item, Image.Image):
        h.update(f"pil:{item.mode}:{item.size}".encode())
        h.update(item.tobytes())
    else:
        try:
            with open(item, "rb") as f:
                h.update(b"file:")
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        except FileNotFoundError:
            raise ImageReadError(str(item), "file not found") from None
    return h.hexdigest()



def channel_kind(item: Any) -> str | None:
    """"grey" or "colour" for an image file (its header only) or array; None when unknown."""
    try:
        if isinstance(item, np.ndarray):
            return "grey" if item.ndim == 2 or (item.ndim == 3 and item.shape[-1] == 1) \
                else "colour"
        if isinstance(item, (str, Path)) and is_image_file(Path(item)):
            with Image.open(item) as img:
                return "grey" if img.mode in ("1", "L", "LA", "I", "I;16", "F") else "colour"
    except (OSError, ValueError, UnidentifiedImageError):
        return None
    return None
