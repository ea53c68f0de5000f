"""Class side information: descriptions of classes and class x attribute tables.

Zero-shot methods know a class by what is said about it, not by examples: a description
(``{class: description}`` JSON, or a CSV with a class and a description column) or a row of
attributes (a CSV: a class column, then one numeric column per attribute). One reader each,
with errors that name the file, the row, the column and the class.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transferkit.errors import DataError

CLASS_COLUMNS = ("class", "label", "name")


def _read_text(p: Path, what: str) -> str:
    if not p.is_file():
        raise DataError(f"{p}: {what} file not found")
    raw = p.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{p}: not UTF-8 (invalid byte at line {line}); save it as UTF-8"
                        ) from None


def _csv_rows(p: Path, text: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(header, [(line number, cells)]) of a CSV; blank lines left out."""
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise DataError(f"{p}: malformed CSV ({exc})") from None
    numbered = [(i + 1, [c.strip() for c in r]) for i, r in enumerate(rows)
                if any(c.strip() for c in r)]
    if not numbered:
        raise DataError(f"{p}: empty file; expected a header line")
    return numbered[0][1], numbered[1:]


def _class_column(p: Path, header: list[str]) -> int:
    for name in CLASS_COLUMNS:
        if name in header:
            return header.index(name)
    raise DataError(f"{p}: no class column; expected one of {', '.join(CLASS_COLUMNS)} in "
                    f"the header (found {header})")


def read_descriptions(spec: Mapping[str, str] | str | Path | None) -> dict[str, str]:
    """Class descriptions from a dict, a JSON object file ``{class: description}``, or a CSV
    with a class column (class, label or name) and a ``description`` column.

    Every description must be non-empty text; a class may appear once.
    """
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        out = {str(k): v for k, v in spec.items()}
        where = "descriptions"
    else:
        p = Path(spec)
        text = _read_text(p, "descriptions (a JSON object {class: description} or a CSV "
                             "with class,description columns)")
        where = str(p)
        if p.suffix.lower() == ".json":
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"{p}: invalid JSON at line {exc.lineno}, column {exc.colno} "
                                f"({exc.msg})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{p}: expected a JSON object {{class: description}}, got "
                                f"{type(obj).__name__}")
            out = dict(obj)
        else:
            header, rows = _csv_rows(p, text)
            ci = _class_column(p, header)
            if "description" not in header:
                raise DataError(f"{p}: no 'description' column (found {header})")
            di = header.index("description")
            out = {}
            for line, cells in rows:
                if len(cells) != len(header):
                    raise DataError(f"{p}:{line}: {len(cells)} fields, the header has "
                                    f"{len(header)}; quote descriptions that contain commas")
                name = cells[ci]
                if not name:
                    raise DataError(f"{p}:{line}: empty class name")
                if name in out:
                    raise DataError(f"{p}:{line}: class {name!r} is described twice")
                out[name] = cells[di]
    for name, desc in out.items():
        if not isinstance(desc, str):
            raise DataError(f"{where}: the description of class {name!r} is not text "
                            f"({type(desc).__name__})")
        if not desc.strip():
            raise DataError(f"{where}: the description of class {name!r} is empty")
    return {k: v.strip() for k, v in out.items()}


def readable_name(name: str) -> str:
    """A class name as words: 'noun.animal' -> 'animal', 'support_ticket' -> 'support ticket'."""
    base = name.split(".", 1)[1] if "." in name and name.split(".", 1)[0].isalpha() else name
    return base.replace("_", " ").replace("-", " ").strip()


def class_texts(classes: Sequence[str], descriptions: Mapping[str, str] | None = None,
                template: str = "{}") -> list[str]:
    """One text per class: its description, else ``template`` around its readable name.

    Descriptions of classes that are not in ``classes`` are an error naming them.
    """
    desc = dict(descriptions or {})
    if "{}" not in template:
        raise ValueError(f"template {template!r} must contain '{{}}' for the class name")
    unknown = sorted(set(desc) - set(map(str, classes)))
    if unknown:
        raise DataError(f"descriptions name classes not in the data: {unknown}; classes: "
                        f"{list(classes)}")
    return [desc.get(str(c)) or template.format(readable_name(str(c))) for c in classes]


@dataclass(frozen=True)
class AttributeTable:
    """A class x attribute matrix (``values[i, j]``: attribute j of class i)."""

    classes: list[str]
    attributes: list[str]
    values: np.ndarray
    source: str = "<attributes>"

    def for_classes(self, classes: Sequence[str]) -> np.ndarray:
        """The rows of ``classes``, in that order; classes without a row are an error."""
        index = {c: i for i, c in enumerate(self.classes)}
        missing = [c for c in classes if c not in index]
        if missing:
            raise DataError(f"{self.source}: no attribute row for class(es) "
                            f"{', '.join(map(repr, missing))} (the table has "
                            f"{', '.join(self.classes)})")
        return self.values[[index[c] for c in classes]]


def read_attributes(path: str | Path) -> AttributeTable:
    """A class x attribute CSV: a class column (class, label or name), then one numeric
    column per attribute. Errors name the file, line, column and class."""
    p = Path(path)
    header, rows = _csv_rows(p, _read_text(p, "attribute table"))
    ci = _class_column(p, header)
    attrs = [h for j, h in enumerate(header) if j != ci]
    if not attrs:
        raise DataError(f"{p}: no attribute columns after the class column")
    empty = [j + 1 for j, h in enumerate(header) if not h]
    if empty:
        raise DataError(f"{p}:1: column {empty[0]} has no name")
    dup = sorted({h for h in attrs if attrs.count(h) > 1})
    if dup:
        raise DataError(f"{p}:1: attribute column(s) named twice: {dup}")
    classes: list[str] = []
    values: list[list[float]] = []
    for line, cells in rows:
        if len(cells) != len(header):
            raise DataError(f"{p}:{line}: {len(cells)} fields, the header has {len(header)}")
        name = cells[ci]
        if not name:
            raise DataError(f"{p}:{line}: empty class name")
        if name in classes:
            raise DataError(f"{p}:{line}: class {name!r} has a second row")
        row = []
        for j, cell in enumerate(cells):
            if j == ci:
                continue
            try:
                v = float(cell)
            except ValueError:
                v = math.nan
            if not math.isfinite(v):
                raise DataError(f"{p}:{line}: class {name!r}, column {header[j]!r}: "
                                f"{cell!r} is not a finite number")
            row.append(v)
        classes.append(name)
        values.append(row)
    if not classes:
        raise DataError(f"{p}: no class rows after the header")
    return AttributeTable(classes, attrs, np.asarray(values, dtype=np.float64), str(p))
