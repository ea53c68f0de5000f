"""Build the case-study datasets from installed Debian packages (nothing is downloaded).

  clipart OUT  balanced clip-art task from openclipart-png (10 object categories)
  icons OUT    icon-name task from the freedesktop icon themes, split by theme groups

Each writes OUT/train, OUT/val, OUT/test (one folder per class) and OUT/manifest.json
(skipped decompression bombs, SVGs that failed to render, dropped classes, theme groups).
A missing package: an ``error:`` line naming the Debian package, exit 2.

Run: PYTHONPATH=src .venv/bin/python tools/build_collections.py icons /tmp/icons
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from transferkit.data.collections import clipart_task
from transferkit.data.icons import icon_task
from transferkit.errors import DataError


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, build one collection, print what was skipped; 2 on bad input."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["clipart", "icons"])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0, help="clip art: the split's seed")
    ap.add_argument("--size", type=int, default=None, help="side in px (clip art 128, "
                                                           "icons 64)")
    ap.add_argument("--test-themes", default="elementary-xfce",
                    help="icons: comma-separated themes whose groups are the test set")
    ap.add_argument("--val-themes", default="Paper",
                    help="icons: comma-separated themes whose groups are the validation set")
    ap.add_argument("--min-themes", type=int, default=5,
                    help="icons: an icon name must be drawn in this many themes")
    ap.add_argument("--root", type=Path, default=None,
                    help="where the package installed the collection (default: Debian's)")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        if not args.overwrite:
            print(f"error: {args.out} is not empty (give --overwrite)", file=sys.stderr)
            return 2
        shutil.rmtree(args.out)
    try:
        if args.what == "clipart":
            m = clipart_task(args.out, seed=args.seed, size=args.size or 128,
                             **({"root": args.root} if args.root else {}))
        else:
            m = icon_task(args.out, test_themes=_names(args.test_themes),
                          val_themes=_names(args.val_themes), min_themes=args.min_themes,
                          size=args.size or 64, **({"root": args.root} if args.root else {}))
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _summary(m)
    print(f"wrote {args.out} (manifest: {args.out / 'manifest.json'})")
    return 0


def _names(s: str) -> list[str]:
    return [t.strip() for t in s.split(",") if t.strip()]


def _summary(m: dict) -> None:
    counts = {r: sum(c[r] for c in m["classes"].values()) for r in ("train", "val", "test")}
    print(f"{m['collection']}: {len(m['classes'])} classes, {counts['train']} train / "
          f"{counts['val']} val / {counts['test']} test images")
    for s in m.get("skipped", []):
        print(f"skipped {s['file']}: {s['reason']}")
    for s in m.get("failed", []):
        print(f"failed to render, skipped {s['file']}: {s['reason']}")
    if m.get("groups"):
        print("theme groups (near-duplicate drawings): "
              + "; ".join(", ".join(g) for g in m["groups"]))
    if m.get("dropped"):
        print(f"{len(m['dropped'])} icon names dropped (too few images for the split): "
              + ", ".join(sorted(m["dropped"])[:20])
              + (" ..." if len(m["dropped"]) > 20 else ""))


if __name__ == "__main__":
    sys.exit(main())
