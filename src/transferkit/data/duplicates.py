"""Exact duplicates (by content hash): an item under two classes, a test item also in
training. Cheap (one hash per file) and only warned about: the run says which items."""

from __future__ import annotations

from transferkit.data.dataset import SPLIT_NAMES, Splits
from transferkit.errors import DataError


def duplicate_notes(splits: Splits, limit: int = 3) -> list[str]:
    """Warnings about exact duplicates (by content hash): the same item under two classes,
    and the same item in training and in the test (or validation) data."""
    from transferkit.data.images import item_key

    keys: dict[str, list[tuple[str, str, str]]] = {}  # key -> (role, class, origin)
    for role, ds in splits.items():
        if role not in SPLIT_NAMES:
            continue
        for i, item in enumerate(ds.items):
            try:
                k = item_key(item)
            except (OSError, DataError):
                continue  # unreadable: the reader reports it
            name = ds.class_names[ds.labels[i]] if ds.labels is not None else "?"
            keys.setdefault(k, []).append((role, name, ds.origins[i]))
    clash, leak = [], {"test": [], "val": []}
    for seen in keys.values():
        if len({c for _, c, _ in seen}) > 1:
            clash.append(" = ".join(f"{o} ({c})" for _, c, o in seen[:2]))
        roles = {r for r, _, _ in seen}
        for other in leak:
            if "train" in roles and other in roles:
                leak[other].append(" = ".join(o for r, _, o in seen if r in ("train", other))
                                   )
    notes = []
    if clash:
        notes.append(f"{len(clash)} item(s) appear under two classes (identical content): "
                     f"{'; '.join(clash[:limit])}{'; ...' if len(clash) > limit else ''}")
    for other, pairs in leak.items():
        if pairs:
            notes.append(f"{len(pairs)} {other} item(s) are also in the training data "
                         f"(identical content), so the {other} score is optimistic: "
                         f"{'; '.join(pairs[:limit])}{'; ...' if len(pairs) > limit else ''}")
    return notes
