"""A self-contained HTML report: every plot and thumbnail is embedded, nothing is fetched."""

from __future__ import annotations

import base64
import datetime as dt
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, FileSystemLoader, select_autoescape
from PIL import Image

from transferkit._io import write_bytes_atomic
from transferkit.evaluation.plots import confusion_matrix_png, per_class_f1_png, roc_curves_png

_TEMPLATES = Path(__file__).parent / "templates"
THUMB = 128


def _data_uri(png: bytes | None) -> str | None:
    return None if png is None else "data:image/png;base64," + base64.b64encode(png).decode()


def _thumb(item: Any, load_item: Callable[[Any], Image.Image] | None) -> str | None:
    try:
        if load_item is not None:
            img = load_item(item)
        elif isinstance(item, np.ndarray):
            img = Image.fromarray(item)
        else:
            img = Image.open(item)
        img = img.convert("RGB")
        scale = THUMB / max(img.size)
        if scale > 1:  # upscale tiny images with nearest neighbour so pixels stay crisp
            img = img.resize((round(img.width * scale), round(img.height * scale)),
                             Image.Resampling.NEAREST)
        else:
            img.thumbnail((THUMB, THUMB))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return _data_uri(buf.getvalue())
    except Exception:  # a thumbnail must never break the report
        return None


def gallery_order(y_true: np.ndarray, y_pred: np.ndarray, conf: np.ndarray) -> list[int]:
    """Mistakes first (most confident first), then correct ones (least confident first)."""
    wrong = [int(i) for i in np.flatnonzero(y_true != y_pred)]
    right = [int(i) for i in np.flatnonzero(y_true == y_pred)]
    wrong.sort(key=lambda i: -conf[i])
    right.sort(key=lambda i: conf[i])
    return wrong + right


def write_report(out_dir: str | Path, *, title: str, metrics: dict[str, Any],
                 y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
                 proba: np.ndarray | None, class_names: Sequence[str],
                 items: Sequence[Any] | None = None, item_kind: str = "image",
                 load_item: Callable[[Any], Image.Image] | None = None,
                 info: dict[str, Any] | None = None, tables: list[dict[str, Any]] | None = None,
                 max_gallery: int = 48) -> Path:
    """Write ``out_dir/report.html`` (metrics, plots, per-class table, gallery); return it."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    names = [str(c) for c in class_names]
    conf = (np.asarray(proba).max(axis=1) if proba is not None
            else np.ones(len(y_true), dtype=np.float64))
    gallery = []
    if items is not None:
        for i in gallery_order(y_true, y_pred, conf)[:max_gallery]:
            item = items[i]
            entry = {"true": names[y_true[i]], "pred": names[y_pred[i]],
                     "conf": float(conf[i]), "wrong": bool(y_true[i] != y_pred[i]),
                     "caption": None, "img": None, "text": None}
            if item_kind == "text":
                text = str(item)
                entry["text"] = text if len(text) <= 300 else text[:300] + "…"
            else:
                entry["img"] = _thumb(item, load_item)
                if isinstance(item, (str, Path)):
                    entry["caption"] = Path(item).name
            gallery.append(entry)
    info = dict(info or {})
    skipped = list(info.pop("skipped_files", []) or [])
    plots = {
        "confusion": _data_uri(confusion_matrix_png(metrics["confusion_matrix"], names)),
        "roc": _data_uri(roc_curves_png(y_true, proba, names)),
        "f1": _data_uri(per_class_f1_png(metrics)),
    }
    env = Environment(loader=FileSystemLoader(str(_TEMPLATES)),
                      autoescape=select_autoescape(["html", "j2"]))
    html = env.get_template("report.html.j2").render(
        title=title, metrics=metrics, info=info, tables=tables or [], plots=plots,
        gallery=gallery, n_mistakes=int((y_true != y_pred).sum()), skipped=skipped,
        generated=dt.datetime.now().strftime("%Y-%m-%d %H:%M"), item_kind=item_kind)
    out = Path(out_dir) / "report.html"
    return write_bytes_atomic(out, html.encode("utf-8"))
