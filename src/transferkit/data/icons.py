"""Icon-name classification across freedesktop icon themes, split by groups of related themes.

The same named concept (``edit-copy``, ``drive-harddisk``) drawn by different designers in
each theme is one class. Some themes derive from others (mate from gnome): their drawings
are near-duplicates, so a split that puts siblings on both sides measures copying. Themes
are grouped by near-duplicate drawings (see ``theme_groups``) and every split keeps a
group on one side.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from transferkit.data.collections import MissingPackageError, on_white, write_manifest
from transferkit.errors import DataError

ICON_ROOT = Path("/usr/share/icons")
# theme folder -> Debian package; dark/light variants of a theme are left out (same drawings)
THEMES = {"gnome": "gnome-icon-theme", "mate": "mate-icon-theme", "menta": "mate-icon-theme",
          "Adwaita": "adwaita-icon-theme", "Tango": "tango-icon-theme",
          "elementary-xfce": "elementary-xfce-icon-theme", "breeze": "breeze-icon-theme",
          "Faba": "moka-icon-theme", "Paper": "paper-icon-theme", "Numix": "numix-icon-theme"}
CONTEXTS = ("actions", "devices", "places", "status", "categories", "emblems", "mimetypes",
            "mimes", "legacy")
SIZE_ORDER = ("48", "64", "32", "96", "128", "256", "24", "scalable")
SKIP_NAME = re.compile(r"(-symbolic|-rtl|^gtk-|^stock_|^gnome-|^xfce-|^gtk_|@)")


def _size_of(parts: Sequence[str]) -> str | None:
    for p in parts:
        m = re.fullmatch(r"(\d+)(x\d+)?", p)
        if m:
            return m.group(1)
        if p == "scalable":
            return "scalable"
    return None


def index_theme(theme_dir: Path) -> dict[str, Path]:
    """icon name -> file of the preferred size (48 px first, then SIZE_ORDER) in one theme,
    from the context folders only (no app logos); aliases of one drawing keep one name."""
    best: dict[str, tuple[int, Path]] = {}
    for path in theme_dir.rglob("*"):
        if path.suffix not in (".png", ".svg") or not path.exists():
            continue
        parts = path.relative_to(theme_dir).parts[:-1]
        size = _size_of(parts)
        if size not in SIZE_ORDER or not any(c in parts for c in CONTEXTS):
            continue
        if any("@" in p for p in parts) or SKIP_NAME.search(path.stem):
            continue
        rank = SIZE_ORDER.index(size)
        if path.stem not in best or rank < best[path.stem][0]:
            best[path.stem] = (rank, path)
    by_real: dict[str, str] = {}
    out: dict[str, Path] = {}
    for name in sorted(best):
        real = os.path.realpath(best[name][1])
        if real in by_real:  # a symlinked alias: one drawing, one name
            continue
        by_real[real] = name
        out[name] = best[name][1]
    return out


def render(path: Path, size: int) -> Image.Image:
    """An icon file (PNG, or SVG rendered by librsvg's rsvg-convert) on white, size px."""
    if path.suffix == ".svg":
        exe = shutil.which("rsvg-convert")
        if exe is None:
            raise MissingPackageError("librsvg2-bin", Path("rsvg-convert"))
        proc = subprocess.run([exe, "-w", str(size), "-h", str(size), "-f", "png",
                               "--keep-aspect-ratio", str(path)], capture_output=True,
                              timeout=30, check=False)
        if proc.returncode != 0 or not proc.stdout:
            raise DataError(proc.stderr.decode(errors="replace").strip() or "no output")
        import io
        img = Image.open(io.BytesIO(proc.stdout))
    else:
        img = Image.open(path)
    img.load()
    return on_white(img, size)


def _thumb(img: Image.Image) -> np.ndarray:
    a = np.asarray(img.resize((16, 16), Image.Resampling.BILINEAR), dtype=np.float32) / 255
    v = a.reshape(-1) - a.mean()
    return v / max(float(np.linalg.norm(v)), 1e-6)


def theme_groups(thumbs: dict[str, dict[str, np.ndarray]], threshold: float = 0.25,
                 near: float = 0.9) -> tuple[list[list[str]], dict[str, float]]:
    """Groups of related themes: two themes are linked when at least ``threshold`` of the
    names both have are near-duplicate drawings (cosine similarity of centred 16x16 RGB
    thumbnails >= ``near``); groups are the connected components. Also returns every pair's
    near-duplicate fraction ("a|b")."""
    themes = sorted(thumbs)
    parent = {t: t for t in themes}

    def find(t: str) -> str:
        while parent[t] != t:
            t = parent[t]
        return t

    pairs: dict[str, float] = {}
    for i, a in enumerate(themes):
        for b in themes[i + 1:]:
            shared = sorted(set(thumbs[a]) & set(thumbs[b]))
            if len(shared) < 10:
                continue
            sims = [float(thumbs[a][n] @ thumbs[b][n]) for n in shared]
            frac = float(np.mean(np.asarray(sims) >= near))
            pairs[f"{a}|{b}"] = round(frac, 3)
            if frac >= threshold:
                parent[find(b)] = find(a)
    groups: dict[str, list[str]] = {}
    for t in themes:
        groups.setdefault(find(t), []).append(t)
    return sorted(groups.values()), pairs


def load_themes(themes: Sequence[str], root: Path, size: int, min_themes: int
                ) -> tuple[dict[str, dict[str, Image.Image]], list[dict[str, str]], list[str]]:
    """(theme -> name -> image for names in at least ``min_themes`` themes, failed renders
    (listed, skipped), themes not installed)."""
    missing = [t for t in themes if not (root / t).is_dir()]
    index = {t: index_theme(root / t) for t in themes if t not in missing}
    counts: dict[str, int] = {}
    for names in index.values():
        for n in names:
            counts[n] = counts.get(n, 0) + 1
    images: dict[str, dict[str, Image.Image]] = {}
    failed: list[dict[str, str]] = []
    for theme, names in index.items():
        images[theme] = {}
        seen: set[str] = set()
        for name, path in names.items():
            if counts[name] < min_themes:
                continue
            try:
                img = render(path, size)
            except MissingPackageError:
                raise
            except (DataError, OSError, subprocess.TimeoutExpired) as exc:
                failed.append({"file": str(path), "reason": str(exc)[:200]})
                continue
            digest = hashlib.sha1(img.tobytes()).hexdigest()
            if digest in seen:  # a copied (not linked) alias: keep the first name
                continue
            seen.add(digest)
            images[theme][name] = img
    return images, failed, missing


def _group_of(theme: str, groups: list[list[str]]) -> int:
    for i, g in enumerate(groups):
        if theme in g:
            return i
    raise DataError(f"icons: theme {theme!r} is not among the themes used "
                    f"({', '.join(t for g in groups for t in g)})")


def icon_task(out: str | Path, *, themes: Sequence[str] = tuple(THEMES),
              test_themes: Sequence[str] = ("elementary-xfce",),
              val_themes: Sequence[str] = ("Paper",), min_themes: int = 5,
              min_train: int = 2, max_classes: int | None = None, size: int = 64,
              root: str | Path = ICON_ROOT) -> dict[str, Any]:
    """An icon-name task: train / val / test folders split by theme groups.

    The groups holding ``test_themes`` form the test set, those holding ``val_themes`` the
    validation set, every other group the training set. A class is an icon name found in at
    least ``min_themes`` themes with ``min_train`` training and one test image; the others
    are named in the manifest's ``dropped``. Returns the manifest (``out/manifest.json``).
    """
    root = Path(root)
    if not root.is_dir() or not any((root / t).is_dir() for t in themes):
        raise MissingPackageError(" ".join(sorted(set(THEMES.values()))), root / themes[0])
    images, failed, missing = load_themes(themes, root, size, min_themes)
    thumbs = {t: {n: _thumb(img) for n, img in v.items()} for t, v in images.items()}
    groups, pairs = theme_groups(thumbs)
    test_g = {_group_of(t, groups) for t in test_themes}
    val_g = {_group_of(t, groups) for t in val_themes}
    if test_g & val_g:
        raise DataError("icons: a test theme and a validation theme are in one group: "
                        + ", ".join(t for i in test_g & val_g for t in groups[i]))
    role = {t: ("test" if i in test_g else "val" if i in val_g else "train")
            for i, g in enumerate(groups) for t in g}
    names = sorted({n for v in images.values() for n in v})
    per: dict[str, dict[str, list[str]]] = {
        n: {r: [t for t in images if n in images[t] and role[t] == r]
            for r in ("train", "val", "test")} for n in names}
    dropped = {n: f"{len(p['train'])} training / {len(p['test'])} test images (needs "
               f"{min_train} / 1)" for n, p in per.items()
               if len(p["train"]) < min_train or not p["test"]}
    kept = [n for n in names if n not in dropped]
    kept.sort(key=lambda n: (-sum(map(len, per[n].values())), n))
    if max_classes is not None:
        kept = sorted(kept[:max_classes])
    if len(kept) < 2:
        raise DataError(f"icons: only {len(kept)} icon names have {min_train} training and 1 "
                        "test image; lower --min-themes or change the split")
    out = Path(out)
    for n in kept:
        for r, ts in per[n].items():
            for t in ts:
                (out / r / n).mkdir(parents=True, exist_ok=True)
                images[t][n].save(out / r / n / f"{t}.png")
    manifest = {"collection": "freedesktop icon themes", "root": str(root), "size": size,
                "themes": {t: THEMES.get(t, "?") for t in images}, "missing": missing,
                "groups": groups, "roles": role, "near_duplicate_fraction": pairs,
                "grouping": "themes linked when >= 25% of shared names have near-duplicate "
                            "drawings (cosine >= 0.9 of centred 16x16 RGB thumbnails); "
                            "groups = connected components",
                "classes": {n: {r: len(ts) for r, ts in per[n].items()} for n in sorted(kept)},
                "dropped": dropped, "failed": failed}
    write_manifest(out, manifest)
    return manifest
