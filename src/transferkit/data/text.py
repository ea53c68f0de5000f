"""Reading text datasets: a CSV with text and label columns, or a folder of .txt files per class.

Texts must be UTF-8 (a BOM is accepted). Empty texts carry nothing to learn from: they are left
out and listed in ``Dataset.skipped`` (the report shows them). A file that is not UTF-8 is an
error naming the file and byte offset, or, with ``skip_bad``, left out and listed too.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.data.dataset import Dataset, encode_labels, visible_files
from transferkit.data.manifest import decode_utf8, open_csv
from transferkit.errors import DataError

TEXT_EXTENSIONS = frozenset({".txt", ".text", ".md"})
TEXT_COLUMNS = ("text", "sentence", "document", "content", "review", "body")


def is_text_csv(csv_path: str | Path, text_column: str | None = None) -> bool:
    """True when the CSV's header names a text column (and no image ``path`` column)."""
    try:
        with open(csv_path, encoding="utf-8-sig", errors="replace", newline="") as f:
            header = next(csv.reader(f), [])
    except OSError:
        return False
    cols = [h.strip() for h in header]
    if text_column is not None:
        return text_column in cols
    return "path" not in cols and any(c in cols for c in TEXT_COLUMNS)


def from_text_csv(csv_path: str | Path, text_column: str | None = None,
                  label_column: str | None = "label") -> Dataset:
    """Texts and labels from a UTF-8 CSV (quoted fields may span lines).

    ``text_column`` defaults to the first of text, sentence, document, content, review, body.
    ``label_column=None`` reads the texts only (an unlabelled dataset).
    """
    csv_path = Path(csv_path)
    reader, header = open_csv(csv_path, (), "")
    if text_column is None:
        text_column = next((c for c in TEXT_COLUMNS if c in header), "text")
    missing = [c for c in (text_column, label_column) if c is not None and c not in header]
    if missing:
        raise DataError(f"{csv_path}: missing column(s) {', '.join(map(repr, missing))}; "
                        f"found columns {header or '(none: empty file)'}; pass "
                        f"--text-column / --label-column to name them")
    items: list[str] = []
    raw_labels: list[str] = []
    origins: list[str] = []
    skipped: list[str] = []
    empty_labels: list[str] = []
    try:
        for row in reader:
            # the line where the record starts (records may span lines)
            where = f"{csv_path}:{reader.line_num - (row.get(text_column) or '').count(chr(10))}"
            if None in row:
                raise DataError(f"{where}: more fields than the header's {len(header)}; quote "
                                f"texts that contain commas")
            t = row.get(text_column) or ""
            lab = (row.get(label_column) or "").strip() if label_column is not None else "-"
            if not lab:
                raise DataError(f"{where}: empty {label_column!r}")
            if not t.strip():
                skipped.append(f"{where}: empty text")
                empty_labels.append(lab)
                continue
            items.append(t)
            raw_labels.append(lab)
            origins.append(where)
    except csv.Error as exc:
        raise DataError(f"{csv_path}:{reader.line_num}: malformed CSV ({exc})") from None
    if not items:
        raise DataError(f"{csv_path}: no non-empty texts after the header")
    if label_column is None:
        return Dataset(items=items, labels=None, class_names=[], modality="text",
                       source=str(csv_path), origins=origins, skipped=skipped)
    names = sorted(set(raw_labels))
    index = {n: i for i, n in enumerate(names)}
    gone = sorted(set(empty_labels) - set(names))
    notes = [f"{csv_path}: class {c!r} left out: every one of its "
             f"{empty_labels.count(c)} text(s) is empty (the model has {len(names)} classes)"
             for c in gone]
    return Dataset(items=items, labels=np.asarray([index[v] for v in raw_labels]),
                   class_names=names, modality="text", source=str(csv_path), origins=origins,
                   skipped=skipped, notes=notes)


def is_text_file(path: Path) -> bool:
    """True for .txt / .text / .md files."""
    return path.suffix.lower() in TEXT_EXTENSIONS


def is_text_folder(root: Path) -> bool:
    """True when ``root``'s class folders (or, with none, ``root`` itself) hold .txt files."""
    subs = [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    return any(p.is_file() and is_text_file(p) for d in subs or [root] for p in d.rglob("*"))


def _read_texts(files: Sequence[Path], skip_bad: bool,
                skipped: list[str]) -> list[tuple[str, str]]:
    """(text, file) of each readable non-empty file; the others listed in ``skipped``."""
    texts: list[tuple[str, str]] = []
    for f in files:
        try:
            t = decode_utf8(f.read_bytes(), str(f))
        except DataError as exc:
            if not skip_bad:
                raise DataError(f"{exc} (pass skip_bad=True / --skip-bad to leave such "
                                f"files out)") from None
            skipped.append(str(exc))
            continue
        if not t.strip():
            skipped.append(f"{f}: empty text")
            continue
        texts.append((t, str(f)))
    return texts


def from_text_folder(root: str | Path, skip_bad: bool = False, *,
                     labelled: bool = True) -> Dataset:
    """One text per ``root/<class>/*.txt`` file (UTF-8); classes sorted by folder name.

    ``labelled=False``: every .txt file anywhere below ``root``, unlabelled.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such directory")
    skipped: list[str] = []
    if not labelled:
        texts = _read_texts(visible_files(root, is_text_file), skip_bad, skipped)
        if not texts:
            raise DataError(f"{root}: no non-empty texts found (looked for *.txt at any depth)")
        return Dataset(items=[t for t, _ in texts], labels=None, class_names=[],
                       modality="text", source=str(root), origins=[o for _, o in texts],
                       skipped=skipped)
    items: list[str] = []
    labels: list[int] = []
    origins: list[str] = []
    names: list[str] = []
    empty: list[str] = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        texts = _read_texts(visible_files(d, is_text_file), skip_bad, skipped)
        if not texts:
            empty.append(d.name)
            continue
        names.append(d.name)
        for t, origin in texts:
            items.append(t)
            labels.append(len(names) - 1)
            origins.append(origin)
    if not items:
        raise DataError(f"{root}: no non-empty texts found; expected {root}/<class>/*.txt")
    return Dataset(items=items, labels=np.asarray(labels), class_names=names, modality="text",
                   source=str(root), origins=origins, skipped=skipped,
                   notes=[f"{root / e}: class folder without readable texts (no .txt "
                          f"file, or every one empty), left out (the model has {len(names)} "
                          f"classes)" for e in empty])


def from_texts(texts: Sequence[str], labels: Sequence[Any] | None = None,
               class_names: Sequence[str] | None = None, source: str = "<texts>") -> Dataset:
    """A text dataset from in-memory strings (empty ones are left out and listed)."""
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise DataError(f"{source}[{bad[0]}]: expected a string, got "
                        f"{type(texts[bad[0]]).__name__}")
    enc, names = (encode_labels(labels, class_names, source) if labels is not None
                  else (None, list(class_names or [])))
    if enc is not None and len(enc) != len(texts):
        raise DataError(f"{source}: {len(texts)} texts but {len(enc)} labels")
    keep = [i for i, t in enumerate(texts) if t.strip()]
    skipped = [f"{source}[{i}]: empty text" for i, t in enumerate(texts) if not t.strip()]
    if not keep:
        raise DataError(f"{source}: every text is empty")
    return Dataset(items=[texts[i] for i in keep],
                   labels=None if enc is None else enc[keep], class_names=names,
                   modality="text", source=source,
                   origins=[f"{source}[{i}]" for i in keep], skipped=skipped)
