"""Write the bundled Fashion-MNIST sample: PER seeded test-split images per class as PNGs.

Run: python tools/make_fashion_mnist_sample.py OUT PER (reads Debian's dataset-fashion-mnist)
"""

import gzip
import os
import sys

import numpy as np
from PIL import Image

ROOT = "/usr/share/datasets/fashion-mnist"
NAMES = ["t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
         "bag", "ankle_boot"]


def idx(path: str) -> np.ndarray:
    """An IDX file (the MNIST format) as an array."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    nd = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)


def main() -> None:
    x = idx(f"{ROOT}/t10k-images-idx3-ubyte.gz")
    y = idx(f"{ROOT}/t10k-labels-idx1-ubyte.gz")
    out, per = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(0)
    for c, name in enumerate(NAMES):
        picks = np.sort(rng.choice(np.flatnonzero(y == c), per, replace=False))
        os.makedirs(f"{out}/{name}", exist_ok=True)
        for i in picks:
            Image.fromarray(x[i]).save(f"{out}/{name}/t10k_{i:05d}.png", optimize=True)


if __name__ == "__main__":
    main()
