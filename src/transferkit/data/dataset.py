"""The one data layer: items (image files, arrays or texts), labelled or not, with class names,
optional domain tags and per-sample weights, and the named datasets (roles) of a run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.data.images import is_image_file
from transferkit.errors import DataError

SPLIT_NAMES = ("train", "val", "test")


@dataclass
class Dataset:
    """Items with integer labels indexing ``class_names`` (``labels`` None: unlabelled).

    ``items`` are ``pathlib.Path`` image files, numpy image arrays, or strings of text.
    ``origins`` says where each item came from (file path or ``CSV:row``) for error messages.
    ``domain`` tags the data's domain (e.g. "source", "target"); ``weights`` are optional
    per-sample weights (instance reweighting). ``notes`` are warnings a reader had (e.g. an
    empty class folder that was left out); runs print them and list them in the report.
    """

    items: list[Any]
    labels: np.ndarray | None
    class_names: list[str]
    modality: str = "image"
    source: str = "<memory>"
    origins: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    domain: str | None = None
    weights: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.origins:
            self.origins = [_origin(it, i, self.source) for i, it in enumerate(self.items)]
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int64)
            if len(self.labels) != len(self.items):
                raise DataError(f"{self.source}: {len(self.items)} items but "
                                f"{len(self.labels)} labels")
        if self.weights is not None:
            self.weights = np.asarray(self.weights, dtype=np.float64)
            if self.weights.shape != (len(self.items),):
                raise DataError(f"{self.source}: {len(self.items)} items but "
                                f"{self.weights.size} weights")
            if not np.isfinite(self.weights).all() or (self.weights < 0).any():
                raise DataError(f"{self.source}: sample weights must be finite and >= 0")

    def __len__(self) -> int:
        return len(self.items)

    @property
    def noun(self) -> str:
        """What the items are, for messages: "image(s)" or "text(s)"."""
        return {"text": "text(s)", "audio": "clip(s)"}.get(self.modality, "image(s)")

    def __repr__(self) -> str:
        return (f"Dataset({self.source!r}, n={len(self)}, classes={len(self.class_names)}, "
                f"modality={self.modality!r})")

    def subset(self, indices: Sequence[int] | np.ndarray, source: str | None = None) -> Dataset:
        """The items at ``indices``, with the same class names."""
        idx = np.asarray(indices, dtype=np.int64)
        return replace(
            self,
            items=[self.items[i] for i in idx],
            labels=None if self.labels is None else self.labels[idx],
            weights=None if self.weights is None else self.weights[idx],
            origins=[self.origins[i] for i in idx],
            source=source or self.source,
            skipped=list(self.skipped),
            notes=list(self.notes),
        )

    def class_counts(self) -> dict[str, int]:
        """Number of items per class name (0 for classes with none)."""
        counts = Counter(self.labels.tolist()) if self.labels is not None else Counter()
        return {name: int(counts.get(i, 0)) for i, name in enumerate(self.class_names)}

    def align_classes(self, class_names: Sequence[str]) -> Dataset:
        """Re-index labels onto ``class_names`` (a model's classes); unknown labels raise."""
        class_names = list(class_names)
        if self.labels is None or list(self.class_names) == class_names:
            return replace(self, class_names=class_names)
        index = {name: i for i, name in enumerate(class_names)}
        new = np.empty_like(self.labels)
        for k, lab in enumerate(self.labels):
            name = self.class_names[lab]
            if name not in index:
                raise DataError(
                    f"{self.origins[k]}: label {name!r} is not one of the model's classes "
                    f"({', '.join(class_names)})")
            new[k] = index[name]
        return replace(self, labels=new, class_names=class_names)


def _origin(item: Any, i: int, source: str) -> str:
    if isinstance(item, Path):
        return str(item)
    return f"{source}[{i}]"


# ----------------------------------------------------------------------------- readers

def from_arrays(images: Sequence[Any] | np.ndarray, labels: Sequence[Any] | None = None,
                class_names: Sequence[str] | None = None, source: str = "<arrays>") -> Dataset:
    """A dataset of in-memory images (N x H x W [x C] array or list of arrays) and labels.

    ``labels`` may be class names or integers; integers index ``class_names`` when given.
    """
    items = list(images) if not isinstance(images, np.ndarray) else [a for a in images]
    if len(items) == 0:
        raise DataError(f"{source}: no images given")
    enc, names = encode_labels(labels, class_names, source) if labels is not None else (
        None, list(class_names or []))
    if enc is not None and len(enc) != len(items):
        raise DataError(f"{source}: {len(items)} images but {len(enc)} labels")
    return Dataset(items=items, labels=enc, class_names=names, source=source)


def encode_labels(labels: Sequence[Any], class_names: Sequence[str] | None,
                  source: str) -> tuple[np.ndarray, list[str]]:
    """Labels (names or integers) as indices into class names (given, else sorted)."""
    lab = list(labels)
    if class_names is not None:
        names = [str(c) for c in class_names]
        index = {n: i for i, n in enumerate(names)}
        out = []
        for i, v in enumerate(lab):
            if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
                if not 0 <= int(v) < len(names):
                    raise DataError(f"{source}[{i}]: label {v} out of range for "
                                    f"{len(names)} class names")
                out.append(int(v))
            elif str(v) in index:
                out.append(index[str(v)])
            else:
                raise DataError(f"{source}[{i}]: label {v!r} is not in class_names")
        return np.asarray(out, dtype=np.int64), names
    keys = [str(v) for v in lab]
    if all(isinstance(v, (int, np.integer)) for v in lab):
        names = [str(v) for v in sorted({int(v) for v in lab})]
    else:
        names = sorted(set(keys))
    index = {n: i for i, n in enumerate(names)}
    return np.asarray([index[k] for k in keys], dtype=np.int64), names


def from_folder(root: str | Path, *, labelled: bool = True, modality: str = "image"
                ) -> Dataset:
    """Images (or, ``modality="audio"``, audio clips) under ``root/<class>/`` (any depth below
    the class folder); classes sorted.

    ``labelled=False``: every file anywhere below ``root``, unlabelled (class folders, if
    any, are not read as labels), e.g. a target domain.
    """
    if modality == "audio":
        from transferkit.data.audio import is_audio_file

        keep, noun, pattern = is_audio_file, "audio clips", "*.wav|flac|ogg"
    else:
        keep, noun, pattern = is_image_file, "images", "*.png|jpg|..."
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: no such directory")
    if not root.is_dir():
        raise DataError(f"{root}: expected a directory of class folders (or a .csv manifest)")
    if not labelled:
        files = visible_files(root, keep)
        if not files:
            raise DataError(f"{root}: no {noun} found (looked for {pattern} at any depth)")
        return Dataset(items=files, labels=None, class_names=[], source=str(root),
                       modality=modality)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    items: list[Path] = []
    labels: list[int] = []
    names: list[str] = []
    empty: list[str] = []
    for d in class_dirs:
        files = visible_files(d, keep)
        if not files:
            empty.append(d.name)
            continue
        names.append(d.name)
        items.extend(files)
        labels.extend([len(names) - 1] * len(files))
    if not items:
        loose = [p.name for p in root.iterdir() if p.is_file() and keep(p)][:3]
        hint = (f" (found {noun} directly in {root}, e.g. {', '.join(loose)}: put each class "
                f"in its own sub-folder)") if loose else ""
        raise DataError(f"{root}: no {noun} found; expected {root}/<class>/{pattern}" + hint)
    return Dataset(items=items, labels=np.asarray(labels), class_names=names, source=str(root),
                   modality=modality,
                   notes=[f"{root / e}: class folder without {noun}, left out (the model has "
                          f"{len(names)} classes)" for e in empty])


def visible_files(root: Path, keep: Callable[[Path], bool]) -> list[Path]:
    """Files below ``root`` (any depth) that ``keep`` accepts, hidden ones left out; sorted."""
    return sorted(p for p in root.rglob("*") if p.is_file() and keep(p)
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


@dataclass
class Splits:
    """The named datasets of a run (its roles), sharing one list of class names.

    ``train``, ``val`` and ``test`` as today; ``extra`` holds further roles by name (e.g.
    ``target`` unlabelled data, ``target-test``, one set per task).
    """

    train: Dataset
    val: Dataset | None = None
    test: Dataset | None = None
    extra: dict[str, Dataset] = field(default_factory=dict)

    def get(self, role: str) -> Dataset | None:
        """The dataset of ``role`` (None when absent)."""
        if role in SPLIT_NAMES:
            return getattr(self, role)
        return self.extra.get(role)

    def __getitem__(self, role: str) -> Dataset:
        ds = self.get(role)
        if ds is None:
            raise KeyError(f"no {role!r} data in this run (roles: {', '.join(self.roles())})")
        return ds

    def roles(self) -> list[str]:
        """The names of the roles present, train/val/test first."""
        return [n for n, _ in self.items()]

    def items(self) -> list[tuple[str, Dataset]]:
        """(role, dataset) for each role that is present."""
        fixed = [(n, d) for n, d in (("train", self.train), ("val", self.val),
                                     ("test", self.test)) if d is not None]
        return fixed + list(self.extra.items())

    def with_role(self, role: str, data: Dataset | None) -> Splits:
        """A copy with ``role`` set (or removed, for None)."""
        if role in SPLIT_NAMES:
            return replace(self, **{role: data})
        extra = dict(self.extra)
        if data is None:
            extra.pop(role, None)
        else:
            extra[role] = data
        return replace(self, extra=extra)


def stratified_split(ds: Dataset, fraction: float, seed: int = 0,
                     what: str = "test") -> tuple[Dataset, Dataset]:
    """Split off ``fraction`` of each class (deterministic for a seed): (rest, held_out)."""
    if ds.labels is None:
        raise DataError(f"{ds.source}: cannot split an unlabelled dataset")
    if not 0.0 < fraction < 1.0:
        raise DataError(f"--{what}-fraction must be between 0 and 1 (exclusive), got "
                        f"{fraction}")
    for name, n in ds.class_counts().items():
        if n == 1:
            raise DataError(
                f"{ds.source}: class {name!r} has {n} {ds.noun}; at least 2 are needed "
                f"to split off a {what} set (add more, or pass an explicit --{what} set)")
    keep, held, _ = _split_classes(ds, fraction, np.random.default_rng(seed), 2)
    return (ds.subset(sorted(keep)),
            ds.subset(sorted(held), source=f"{ds.source} ({what} split, seed {seed})"))


def _split_classes(ds: Dataset, fraction: float, rng: np.random.Generator,
                   min_per_class: int) -> tuple[list[int], list[int], list[str]]:
    """(kept, held-out, small classes): ``fraction`` of each class held out (at least one
    item, never all); classes under ``min_per_class`` items are kept whole."""
    assert ds.labels is not None
    keep: list[int] = []
    held: list[int] = []
    small: list[str] = []
    for c, name in enumerate(ds.class_names):
        idx = np.flatnonzero(ds.labels == c)
        if len(idx) == 0:
            continue
        if len(idx) < min_per_class:
            keep.extend(idx.tolist())
            small.append(name)
            continue
        n_held = min(max(1, round(fraction * len(idx))), len(idx) - 1)
        perm = rng.permutation(idx)
        held.extend(perm[:n_held].tolist())
        keep.extend(perm[n_held:].tolist())
    return keep, held, small


def holdout_split(ds: Dataset, fraction: float, seed: int = 0, min_per_class: int = 5,
                  min_items: int = 10, seed_label: Any = None
                  ) -> tuple[Dataset, Dataset | None, str]:
    """Hold out ``fraction`` of each class for validation (seeded, stratified): (rest,
    held_out, a sentence saying what was done).

    Classes with fewer than ``min_per_class`` items stay whole in training. When fewer than
    ``min_items`` items (or one class) would be held out, nothing is: (ds, None, why).
    """
    if ds.labels is None:
        raise DataError(f"{ds.source}: cannot hold out validation data from unlabelled data")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout fraction must be between 0 and 1, got {fraction}")
    keep, held, small = _split_classes(ds, fraction, np.random.default_rng(seed),
                                       min_per_class)
    small_note = (f"; {len(small)} class(es) with fewer than {min_per_class} {ds.noun} stay "
                  f"whole in training ({', '.join(small[:5])}{', ...' if len(small) > 5 else ''})"
                  if small else "")
    if len(held) < min_items or len(set(ds.labels[held].tolist())) < 2:
        return ds, None, (f"too few {ds.noun} to hold out validation data ({len(ds)}"
                          f"{small_note}): training runs all its epochs and keeps the last")
    shown = seed if seed_label is None else seed_label
    note = (f"validation: {len(held)} of {len(ds)} training {ds.noun} held out "
            f"({fraction:.0%} of each class, seed {shown}) to pick the epoch{small_note}")
    return (ds.subset(sorted(keep)),
            ds.subset(sorted(held), source=f"{ds.source} (held-out validation, seed {shown})"),
            note)


def make_splits(data: Dataset | Splits, val: Dataset | None = None, test: Dataset | None = None,
                test_fraction: float = 0.25, val_fraction: float = 0.0,
                seed: int = 0, unseen_classes: bool = False) -> Splits:
    """Complete a train/val/test split: explicit sets win, else seeded stratified splits.

    ``unseen_classes``: the test (and validation) data may hold classes the training data
    does not; every role then shares the union of the class names (training's first).
    Further roles of ``data`` are kept, their labels re-indexed the same way.
    """
    splits = data if isinstance(data, Splits) else Splits(train=data)
    val = val or splits.val
    test = test or splits.test
    train = splits.train
    if train.labels is None:
        raise DataError(f"{train.source}: the training data has no labels (put each class in "
                        f"its own sub-folder, or give the CSV a label column)")
    if test is None:
        train, test = stratified_split(train, test_fraction, seed, what="test")
    if val is None and val_fraction > 0:
        train, val = stratified_split(train, val_fraction, seed + 1, what="val")
    names = list(train.class_names)
    if unseen_classes:
        for ds in (val, test, *splits.extra.values()):
            if ds is not None and ds.labels is not None:
                names += [c for c in ds.class_names if c not in names]
        train = train.align_classes(names)
    return Splits(train=train,
                  val=val.align_classes(names) if val is not None else None,
                  test=test.align_classes(names) if test is not None else None,
                  extra={k: d.align_classes(names) if d.labels is not None else d
                         for k, d in splits.extra.items()})
