"""A self-contained HTML report: every plot and thumbnail is embedded, nothing is fetched."""

from __future__ import annotations

import base64
import datetime as dt
import io
import math
import os
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from PIL import Image, ImageOps

from transferkit._io import write_bytes_atomic
from transferkit.evaluation.plots import confusion_matrix_png, per_class_f1_png, roc_curves_png

__all__ = ["gallery_order", "write_report"]

_TEMPLATES = Path(__file__).resolve().parent / "templates"
THUMB = 128  # largest thumbnail side, pixels
TEXT_CHARS = 300  # text items are cut to this many characters in the gallery
_PIXELATED_BELOW = 64  # thumbnails smaller than this are upscaled without smoothing
_MAX_LIST = 30  # list values in the info table show at most this many entries
_MAX_SKIPPED = 50  # skipped files listed by name in the warning box


@lru_cache(maxsize=1)
def _env() -> Environment:
    """The Jinja2 environment of the shipped templates, HTML-escaping every value."""
    env = Environment(loader=FileSystemLoader(str(_TEMPLATES)), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["metric"] = _metric
    return env


def _data_uri(png: bytes | None) -> str | None:
    """A ``data:image/png;base64,`` URI of PNG bytes (None stays None)."""
    return None if png is None else "data:image/png;base64," + base64.b64encode(png).decode()


def _metric(v: Any, digits: int = 3) -> str:
    """A metric value for display; "n/a" for None."""
    return "n/a" if v is None else f"{float(v):.{digits}f}"


def _cell(v: Any) -> str:
    """A table or info value as display text (numbers rounded, lists joined, None as —)."""
    if isinstance(v, np.generic):
        v = v.item()
    if v is None:
        return "—"
    if isinstance(v, bool | str):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v != 0 and abs(v) < 1e-3:
            return f"{v:.2e}"
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, Mapping):
        return ", ".join(f"{k}: {_cell(x)}" for k, x in v.items())
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, Sequence | np.ndarray | set | frozenset):
        seq = list(v)
        shown = ", ".join(_cell(x) for x in seq[:_MAX_LIST])
        return shown + (f", … (+{len(seq) - _MAX_LIST} more)" if len(seq) > _MAX_LIST else "")
    return str(v)


def _is_number(v: Any) -> bool:
    """True for ints and floats (not bools), numpy scalars included."""
    if isinstance(v, np.generic):
        v = v.item()
    return isinstance(v, int | float) and not isinstance(v, bool)


def _array_to_image(arr: np.ndarray) -> Image.Image:
    """An HxW or HxWxC array as a PIL image; non-uint8 data is scaled to 0..255."""
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(f"an image array must be HxW or HxWxC (C in 1, 3, 4), got {a.shape}")
    if a.dtype != np.uint8:
        is_float = a.dtype.kind == "f"
        a = np.nan_to_num(a.astype(np.float64))
        if is_float and a.min() >= 0.0 and a.max() <= 1.0:
            a = a * 255.0
        elif a.max() > 255.0 or a.min() < 0.0:
            lo, hi = a.min(), a.max()
            a = (a - lo) / (hi - lo or 1.0) * 255.0
        a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    return Image.fromarray(a)


def _load(item: Any, load_item: Callable[[Any], Image.Image] | None) -> Image.Image:
    """The image of a gallery item: via ``load_item``, or from an array, PIL image or path."""
    if load_item is not None:
        return load_item(item)
    if isinstance(item, Image.Image):
        return item
    if isinstance(item, np.ndarray):
        return _array_to_image(item)
    with Image.open(item) as img:
        img.load()
        return ImageOps.exif_transpose(img)


def _display_mode(img: Image.Image) -> Image.Image:
    """The image in L, RGB or RGBA, whichever keeps its content."""
    if img.mode in ("L", "RGB", "RGBA"):
        return img
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        return _array_to_image(np.asarray(img))
    has_alpha = "A" in img.getbands() or "transparency" in img.info
    return img.convert("RGBA" if has_alpha else "RGB")


def _thumbnail(img: Image.Image) -> tuple[str, bool]:
    """A ≤THUMB px PNG data URI of ``img`` and whether it is small enough to show pixelated."""
    img = _display_mode(img).copy()
    small = max(img.size) < _PIXELATED_BELOW
    img.thumbnail((THUMB, THUMB), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return _data_uri(buf.getvalue()) or "", small


def _caption(item: Any) -> str | None:
    """The file name of a path item, else None."""
    if isinstance(item, str | os.PathLike):
        name = Path(os.fspath(item)).name
        return name or None
    return None


def gallery_order(y_true: np.ndarray, y_pred: np.ndarray, conf: np.ndarray) -> list[int]:
    """Item indices for the gallery: mistakes first, most confident first; then the correct
    predictions, least confident first. Ties keep the original order."""
    yt, yp, c = np.asarray(y_true), np.asarray(y_pred), np.asarray(conf, dtype=np.float64)
    wrong = [int(i) for i in np.flatnonzero(yt != yp)]
    right = [int(i) for i in np.flatnonzero(yt == yp)]
    wrong.sort(key=lambda i: -c[i])
    right.sort(key=lambda i: c[i])
    return wrong + right


def _gallery(items: Sequence[Any], item_kind: str, load_item: Callable[[Any], Image.Image] | None,
             y_true: np.ndarray, y_pred: np.ndarray, conf: np.ndarray | None, names: list[str],
             max_gallery: int) -> list[dict[str, Any]]:
    """The gallery tiles: labels, confidence and an embedded thumbnail or truncated text."""
    order = gallery_order(y_true, y_pred, conf if conf is not None else np.zeros(len(y_true)))
    tiles = []
    for i in order[: max(0, max_gallery)]:
        item = items[i]
        tile: dict[str, Any] = {
            "index": i, "true": names[y_true[i]], "pred": names[y_pred[i]],
            "conf": None if conf is None else float(conf[i]), "wrong": bool(y_true[i] != y_pred[i]),
            "caption": None, "img": None, "pixelated": False, "text": None, "error": None,
            "audio": None}
        if item_kind == "text":
            text = str(item)
            tile["text"] = text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS] + "…"
        elif item_kind == "audio":
            tile["caption"] = _caption(item)
            try:
                tile["audio"], tile["img"] = _audio_tile(item)
            except Exception as e:  # one unreadable clip must not break the whole report
                tile["error"] = f"{type(e).__name__}: {e}"[:200]
        else:
            tile["caption"] = _caption(item)
            try:
                tile["img"], tile["pixelated"] = _thumbnail(_load(item, load_item))
            except Exception as e:  # one unreadable item must not break the whole report
                tile["error"] = f"{type(e).__name__}: {e}"[:200]
        tiles.append(tile)
    return tiles


AUDIO_SECONDS = 6.0  # gallery clips are cut to this length


def _audio_tile(item: Any) -> tuple[str, str]:
    """(a WAV data URI of the clip at 16 kHz, 16-bit, cut to ``AUDIO_SECONDS``; a small
    log-spectrogram PNG data URI)."""
    import wave

    from transferkit.data.audio import SAMPLE_RATE, load_audio
    from transferkit.evaluation.plots import spectrogram_png

    x = load_audio(item)[: int(AUDIO_SECONDS * SAMPLE_RATE)]
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    uri = "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode()
    return uri, _data_uri(spectrogram_png(x, SAMPLE_RATE))


def _confused_with(cm: list[list[int]], names: list[str]) -> list[str | None]:
    """For each true class, the class it is most often predicted as instead, with the count."""
    out: list[str | None] = []
    for i, row in enumerate(cm):
        off = [(n, j) for j, n in enumerate(row) if j != i and n > 0]
        if not off:
            out.append(None)
            continue
        n, j = max(off)
        out.append(f"{names[j]} ({n})")
    return out


def _table(t: Mapping[str, Any]) -> dict[str, Any]:
    """A user table as display cells (text plus whether it is numeric)."""
    rows = [[{"text": _cell(v), "num": _is_number(v)} for v in row] for row in t.get("rows", [])]
    return {"title": str(t.get("title", "")), "columns": [str(c) for c in t.get("columns", [])],
            "rows": rows, "note": str(t.get("note") or "")}


def write_report(out_dir: str | Path, *, title: str, metrics: dict[str, Any],
                 y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
                 proba: np.ndarray | None, class_names: Sequence[str],
                 items: Sequence[Any] | None = None, item_kind: str = "image",
                 load_item: Callable[[Any], Image.Image] | None = None,
                 info: Mapping[str, Any] | None = None,
                 tables: Sequence[Mapping[str, Any]] | None = None,
                 figures: Sequence[Mapping[str, Any]] | None = None,
                 max_gallery: int = 48) -> Path:
    """Write a self-contained ``out_dir/report.html`` and return its path.

    The report holds the run facts (``info``; its ``skipped_files`` list is shown as a
    warning), headline metrics, the extra ``tables`` (``{"title", "columns", "rows"}``),
    confusion matrix, ROC and per-class F1 plots, a per-class table and a gallery of up to
    ``max_gallery`` test items (``items`` aligned with ``y_true``), mistakes first.
    ``figures`` are extra plots shown after the tables: ``{"title", "png", "note"?}``.
    ``item_kind`` is "image" (items are loaded by ``load_item``, or are paths, PIL images or
    uint8 arrays) or "text" (items are strings). ``metrics`` is ``classification_metrics``
    output for the same predictions. Plots and thumbnails are embedded as PNG data URIs, so
    the file opens offline; every user-provided string is HTML-escaped. The file is written
    atomically.
    """
    if item_kind not in ("image", "text", "audio"):
        raise ValueError(f"item_kind must be 'image', 'text' or 'audio', got {item_kind!r}")
    yt = np.asarray(y_true, dtype=np.int64).reshape(-1)
    yp = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    names = [str(c) for c in class_names]
    if yp.shape != yt.shape:
        raise ValueError(f"y_true and y_pred differ in length: {len(yt)} vs {len(yp)}")
    if items is not None and len(items) != len(yt):
        raise ValueError(f"items ({len(items)}) must be aligned with y_true ({len(yt)})")
    p = None if proba is None else np.asarray(proba, dtype=np.float64)
    conf = None if p is None or len(yt) == 0 else p.max(axis=1)

    facts = dict(info or {})
    skipped = [str(s) for s in (facts.pop("skipped_files", None) or [])]
    cm = metrics["confusion_matrix"]
    per_class = [
        {"name": name, **metrics["per_class"][name], "confused": conf_with}
        for name, conf_with in zip(names, _confused_with(cm, names), strict=True)]
    plots = {
        "confusion": _data_uri(confusion_matrix_png(cm, names)),
        "roc": _data_uri(roc_curves_png(yt, p, names)) if len(yt) else None,
        "f1": _data_uri(per_class_f1_png(metrics)),
    }
    gallery = ([] if items is None else
               _gallery(items, item_kind, load_item, yt, yp, conf, names, max_gallery))
    html = _env().get_template("report.html.j2").render(
        title=str(title), metrics=metrics, n_classes=len(names),
        info=[(str(k), _cell(v)) for k, v in facts.items()],
        tables=[_table(t) for t in tables or []], plots=plots,
        figures=[{"title": str(f["title"]), "note": str(f.get("note") or ""),
                  "src": _data_uri(f["png"])} for f in figures or [] if f.get("png")],
        per_class=per_class,
        gallery=gallery, item_kind=item_kind, n_items=len(yt),
        n_mistakes=int((yt != yp).sum()), has_proba=p is not None,
        skipped=skipped[:_MAX_SKIPPED], n_skipped=len(skipped),
        generated=dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"))
    return write_bytes_atomic(Path(out_dir) / "report.html", html.encode("utf-8"))
