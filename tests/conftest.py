"""Shared fixtures: a per-session feature cache, the bundled sample, the bundled backbone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Never touch the network or the user's cache from tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("feature-cache")
    os.environ["TRANSFERKIT_CACHE"] = str(cache)
    return cache


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    from transferkit.data import fashion_mnist_sample

    return fashion_mnist_sample()


@pytest.fixture(scope="session")
def lite0():
    from transferkit.backbones import load_backbone

    return load_backbone("efficientnet_lite0")


@pytest.fixture(scope="session")
def demo_splits(sample_dir: Path):
    """The demo's seeded 50/50 split of the bundled Fashion-MNIST sample."""
    from transferkit.data import from_folder, make_splits
    from transferkit.demo import DEMO_SEED, DEMO_TEST_FRACTION

    return make_splits(from_folder(sample_dir), test_fraction=DEMO_TEST_FRACTION, seed=DEMO_SEED)


@pytest.fixture(scope="session")
def small_image_dir(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Path:
    """Three classes x 12 real images copied from the sample (a quick dataset for CLI tests)."""
    import shutil

    root = tmp_path_factory.mktemp("small")
    for cls in ("bag", "sneaker", "trouser"):
        (root / cls).mkdir()
        for f in sorted((sample_dir / cls).glob("*.png"))[:12]:
            shutil.copy(f, root / cls / f.name)
    return root
