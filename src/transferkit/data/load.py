"""Reading a dataset from a path: image or text, folder or CSV, labelled or not, split or not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transferkit.data.audio import is_audio_file
from transferkit.data.dataset import Dataset, Splits, from_folder, visible_files
from transferkit.data.images import is_image_file
from transferkit.data.manifest import from_csv
from transferkit.data.text import (
    from_text_csv,
    from_text_folder,
    is_text_csv,
    is_text_file,
)
from transferkit.errors import DataError

_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                  "validation": "val", "test": "test", "testing": "test"}


def load_data(path: str | Path | Dataset, *, text_column: str | None = None,
              label_column: str | None = "label", skip_bad: bool = False,
              labelled: bool | None = None) -> Dataset | Splits:
    """Read a CSV (image manifest, or texts when it has a text column) or a folder of class
    folders (images, or .txt files); a folder with train/val/test inside gives Splits.

    ``labelled``: True requires labels; False reads the items only (labels, e.g. class
    folders, are not read); None (default) reads labels where there are any: a folder of
    loose files, or a CSV without the label column, gives an unlabelled dataset.
    """
    if isinstance(path, Dataset):
        return path
    p = Path(path)
    if p.suffix.lower() == ".csv" or p.is_file():
        text = text_column is not None or (p.is_file() and is_text_csv(p))
        col = None if labelled is False else label_column
        if labelled is None and label_column is not None and p.is_file():
            col = label_column if label_column in _header(p) else None
        return (from_text_csv(p, text_column=text_column, label_column=col) if text
                else from_csv(p, label_column=col))
    if p.is_dir():
        def folder(d: Path) -> Dataset:
            modality, note = detect_modality(d)
            keep = {"text": is_text_file, "audio": is_audio_file}.get(modality, is_image_file)
            lab = labelled if labelled is not None else _has_class_folders(d, keep)
            if modality == "text":
                ds = from_text_folder(d, skip_bad=skip_bad, labelled=lab)
            else:
                ds = from_folder(d, labelled=lab, modality=modality)
            broken = broken_links(d)
            ds.skipped.extend(f"{b}: broken symbolic link (its target does not exist)"
                              for b in broken)
            ds.notes[:0] = [note] if note else []
            if broken:
                ds.notes.append(f"{len(broken)} broken symbolic link(s) skipped: "
                                f"{', '.join(map(str, broken[:3]))}"
                                f"{', ...' if len(broken) > 3 else ''}")
            return ds

        subs = {_SPLIT_ALIASES[c.name.lower()]: c for c in p.iterdir()
                if c.is_dir() and c.name.lower() in _SPLIT_ALIASES}
        if "train" in subs:
            parts = {k: folder(v) for k, v in subs.items()}
            names = parts["train"].class_names
            return Splits(train=parts["train"],
                          val=parts["val"].align_classes(names) if "val" in parts else None,
                          test=parts["test"].align_classes(names) if "test" in parts else None)
        return folder(p)
    raise DataError(f"{p}: no such file or directory")


def _header(csv_path: Path) -> list[str]:
    import csv

    try:
        with open(csv_path, encoding="utf-8-sig", errors="replace", newline="") as f:
            return [h.strip() for h in next(csv.reader(f), [])]
    except OSError:
        return []


_NOUNS = {"image": "image", "text": "text", "audio": "audio"}


def detect_modality(root: Path) -> tuple[str, str | None]:
    """The modality of a folder's files ("image", "text" or "audio"), by the majority of the
    files in its class folders (or in it, with none), and a note naming what is ignored;
    a tie is a DataError naming both kinds."""
    subs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    found: dict[str, list[Path]] = {"image": [], "text": [], "audio": []}
    for d in subs or [root]:
        for f in visible_files(d, lambda q: is_image_file(q) or is_text_file(q)
                               or is_audio_file(q)):
            kind = "image" if is_image_file(f) else "text" if is_text_file(f) else "audio"
            found[kind].append(f)
    ranked = sorted(found, key=lambda k: -len(found[k]))
    first, second = ranked[0], ranked[1]
    if not found[first]:
        return "image", None  # nothing readable: the reader says so
    if found[second] and len(found[second]) == len(found[first]):
        raise DataError(f"{root}: as many {first} files as {second} files "
                        f"({len(found[first])} each, e.g. {found[first][0]} and "
                        f"{found[second][0]}); keep one kind of file per dataset")
    odd = [f for k in ranked[1:] for f in found[k]]
    if not odd:
        return first, None
    kinds = " and ".join(f"{len(found[k])} {k} file(s)" for k in ranked[1:] if found[k])
    shown = ", ".join(str(f) for f in odd[:3]) + (", ..." if len(odd) > 3 else "")
    return first, (f"{root}: read as {first} data ({len(found[first])} {first} files); "
                   f"ignored {kinds}: {shown}")


def broken_links(root: Path) -> list[Path]:
    """Symbolic links below ``root`` whose target is missing (hidden ones left out)."""
    return sorted(p for p in root.rglob("*") if p.is_symlink() and not p.exists()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def is_audio_folder(root: Path) -> bool:
    """True when ``root`` holds audio files and no image files (at any depth)."""
    audio = image = False
    for p in root.rglob("*"):
        if p.is_file():
            audio = audio or is_audio_file(p)
            image = image or is_image_file(p)
        if image:
            return False
    return audio


def _has_class_folders(root: Path, keep: Any) -> bool:
    """True unless ``root`` holds its items loose, with no sub-folder holding any."""
    subs = [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    if any(any(f.is_file() and keep(f) for f in d.rglob("*")) for d in subs):
        return True
    return not any(f.is_file() and keep(f) for f in root.iterdir())


def modality_of(data: str | Path, text_column: str | None = None) -> str:
    """The modality of the data at ``data`` ("image", "text", "audio"), told cheaply from a
    CSV's columns or a folder's files (the real read reports what is wrong with it)."""
    p = Path(data)
    if p.is_file():
        if is_text_csv(p, text_column) or text_column is not None:
            return "text"
        if p.suffix.lower() == ".csv":
            try:
                return from_csv(p, label_column=None).modality
            except Exception:  # the real read reports a bad CSV with its line
                return "image"
        return "image"
    if p.is_dir():
        subs = [c for c in p.iterdir() if c.is_dir() and c.name.lower() in
                ("train", "training")]
        return detect_modality(subs[0] if subs else p)[0]
    return "image"
