"""Helpers shared by the benchmark scripts: machine facts and result files."""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    """What the numbers were measured on (with the versions of the packages that decode,
    compute and score, which `make` may resolve differently from one day to the next)."""
    from importlib.metadata import distributions

    import torch

    wanted = {"numpy", "pillow", "scikit-learn", "timm", "transformers", "onnxruntime"}
    packages = dict(sorted((name, d.version) for d in distributions()
                           if (name := (d.metadata["Name"] or "").lower()) in wanted))
    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "packages": packages}


def add_load_option(ap: argparse.ArgumentParser) -> None:
    """--load: what else the machine ran, said in the notes (times depend on it)."""
    ap.add_argument("--load", default="alone on the machine",
                    help="what else the machine ran, said in the notes (times depend on it)")


def write_results(name: str, payload: dict[str, Any], table: list[list[Any]],
                  header: list[str], notes: str = "") -> Path:
    """Write results/NAME.json and results/NAME.md (a Markdown table)."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [f"# {name}", ""]
    if table:
        lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in table]
    md = "\n".join(lines) + "\n" + (f"\n{notes}\n" if notes else "")
    (RESULTS / f"{name}.md").write_text(md)
    print(md)
    return RESULTS / f"{name}.md"


FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ["t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                   "sneaker", "bag", "ankle_boot"]


def fashion_mnist(split: str) -> tuple[Any, Any]:
    """(images uint8 [n, 28, 28], labels) of Debian's dataset-fashion-mnist ("train"/"test")."""
    import gzip

    import numpy as np

    prefix = {"train": "train", "test": "t10k"}[split]
    paths = [FASHION_MNIST / f"{prefix}-{kind}-idx{d}-ubyte.gz"
             for kind, d in (("images", 3), ("labels", 1))]
    for p in paths:
        if not p.is_file():
            raise SystemExit(f"{p} not found: install Debian's dataset-fashion-mnist "
                             f"(sudo apt-get install dataset-fashion-mnist)")
    out = []
    for p in paths:
        with gzip.open(p, "rb") as f:
            data = f.read()
        nd = data[3]
        dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
        out.append(np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims))
    return out[0], out[1].astype(np.int64)


def fashion_mnist_folder(root: Path, split: str, per_class: int, seed: int) -> Path:
    """Write ``per_class`` seeded random images of each class as PNGs: root/<class>/*.png."""
    import numpy as np
    from PIL import Image

    x, y = fashion_mnist(split)
    rng = np.random.default_rng(seed)
    for c, name in enumerate(FASHION_CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in np.sort(rng.choice(np.flatnonzero(y == c), per_class, replace=False)):
            Image.fromarray(x[i]).save(root / name / f"{split}_{i:05d}.png")
    return root


def epoch_picks(history: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The epoch rows of one adaptation run each choice would keep: ``source-val`` (the
    first best held-out source accuracy, as the Trainer keeps it), ``im`` (the best target
    information-maximisation score) and ``oracle`` (the best target-test accuracy, shown
    only, never used to choose)."""
    return {"source-val": max(history, key=lambda r: r.get("source_val_accuracy", -1.0)),
            "im": max(history, key=lambda r: r["target_im"]),
            "oracle": max(history, key=lambda r: r["target_test_accuracy"])}
