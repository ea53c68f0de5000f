"""Small real datasets shipped inside the package, for the demo, tests and examples."""

from __future__ import annotations

from pathlib import Path

SAMPLES_DIR = Path(__file__).parent / "samples"


def fashion_mnist_sample() -> Path:
    """Folder of 600 Fashion-MNIST test images (60 per class, 28x28 grey PNG, MIT license)."""
    return SAMPLES_DIR / "fashion_mnist"
