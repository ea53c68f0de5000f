"""Reading CSV files: UTF-8 text (a bad byte is named with its line), the header's columns
checked, and image or audio manifests (``path,label``) whose paths stay inside the CSV's
folder."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from transferkit.data.audio import is_audio_file
from transferkit.data.dataset import Dataset
from transferkit.errors import DataError

#: the largest CSV field read (a long document is one field)
MAX_FIELD = 2**27  # 128 MiB: long documents are not an error


def decode_utf8(raw: bytes, where: str) -> str:
    """``raw`` as UTF-8 text (a byte-order mark dropped); a DataError naming the line and
    byte offset of the first invalid byte."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{where}: not UTF-8 (invalid byte 0x{raw[exc.start]:02x} at line "
                        f"{line}, byte offset {exc.start}); re-save it as UTF-8, e.g. "
                        f"`iconv -f latin1 -t utf-8`") from None


def open_csv(csv_path: Path, needed: Sequence[str | None], hint: str
             ) -> tuple[csv.DictReader, list[str]]:
    """A reader over the CSV's rows and its header; a DataError naming the file when it is
    missing, not UTF-8, or lacks one of the ``needed`` columns (``hint``: what to do)."""
    try:
        raw = csv_path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{csv_path}: no such file") from None
    csv.field_size_limit(MAX_FIELD)
    reader = csv.DictReader(io.StringIO(decode_utf8(raw, str(csv_path)), newline=""))
    header = list(reader.fieldnames or [])
    missing = [c for c in needed if c is not None and c not in header]
    if missing:
        raise DataError(f"{csv_path}: missing column(s) {', '.join(map(repr, missing))}; "
                        f"found columns {header or '(none: empty file)'}; {hint}")
    return reader, header


def from_csv(csv_path: str | Path, path_column: str = "path",
             label_column: str | None = "label") -> Dataset:
    """A CSV manifest with ``path`` and ``label`` columns; relative paths resolve next to it.

    ``label_column=None`` reads the paths only (an unlabelled dataset). A path that escapes
    the CSV's folder (``../``, absolute elsewhere, symlink out) is refused.
    """
    csv_path = Path(csv_path)
    reader, _ = open_csv(csv_path, (path_column, label_column),
                         f"expected a header line '{path_column},{label_column}'")
    base = csv_path.parent.resolve()
    items: list[Path] = []
    raw_labels: list[str] = []
    origins: list[str] = []
    for row_no, row in enumerate(reader, start=2):  # line 1 is the header
        where = f"{csv_path}:{row_no}"
        p = (row.get(path_column) or "").strip()
        lab = (row.get(label_column) or "").strip() if label_column is not None else "-"
        if not p:
            raise DataError(f"{where}: empty {path_column!r}")
        if not lab:
            raise DataError(f"{where}: empty {label_column!r} for {p}")
        items.append(_inside(base, p, where))
        raw_labels.append(lab)
        origins.append(f"{where} ({p})")
    if not items:
        raise DataError(f"{csv_path}: no rows after the header")
    modality = "audio" if all(is_audio_file(p) for p in items) else "image"
    if label_column is None:
        return Dataset(items=items, labels=None, class_names=[], source=str(csv_path),
                       origins=origins, modality=modality)
    names = sorted(set(raw_labels))
    index = {n: i for i, n in enumerate(names)}
    return Dataset(items=items, labels=np.asarray([index[v] for v in raw_labels]),
                   class_names=names, source=str(csv_path), origins=origins,
                   modality=modality)


def _inside(base: Path, p: str, where: str) -> Path:
    """The file ``p`` names, resolved against ``base``: it must exist inside ``base``."""
    try:
        full = (base / p).resolve()
        found = full.is_file()
    except (ValueError, OSError) as exc:  # a NUL byte, a name too long, a loop
        raise DataError(f"{where}: unusable path {p!r} ({exc})") from None
    if not full.is_relative_to(base):
        raise DataError(f"{where}: path {p!r} escapes the CSV's folder {base}; "
                        f"only files inside it are read")
    if not found:
        raise DataError(f"{where}: file not found: {full}")
    return full
