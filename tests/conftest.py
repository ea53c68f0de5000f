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


#: the Fashion-MNIST sample's classes grouped into coarse ones (a second task on the same
#: images, for the multi-task tests)
COARSE_GROUPS = {"t-shirt_top": "top", "pullover": "top", "coat": "top", "shirt": "top",
                 "dress": "top", "trouser": "bottom", "sandal": "footwear",
                 "sneaker": "footwear", "ankle_boot": "footwear", "bag": "bag"}


@pytest.fixture(scope="session")
def fine_coarse(sample_dir: Path) -> dict:
    """Two tasks on the sample's images: its ten classes (fine) and four groups (coarse)."""
    from transferkit.data import Dataset, from_folder

    fine = from_folder(sample_dir)
    names = sorted(set(COARSE_GROUPS.values()))
    coarse = Dataset(items=list(fine.items),
                     labels=[names.index(COARSE_GROUPS[fine.class_names[y]])
                             for y in fine.labels],
                     class_names=names, source="fashion sample, coarse groups")
    return {"fine": fine, "coarse": coarse}


@pytest.fixture(scope="session")
def lite0():
    from transferkit.backbones import load_backbone

    return load_backbone("efficientnet_lite0")


@pytest.fixture(scope="session")
def demo_splits(sample_dir: Path):
    """The demo's seeded 50/50 split of the bundled Fashion-MNIST sample."""
    from transferkit.data import from_folder, make_splits
    from transferkit.runs.demo import DEMO_SEED, DEMO_TEST_FRACTION

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


@pytest.fixture(scope="session")
def tiny_text_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a 2-layer, 32-wide BERT with random weights and MiniLM's real
    tokenizer (usable as ``--backbone FOLDER`` in a fresh process)."""
    import shutil

    import torch
    from transformers import BertConfig, BertModel

    from transferkit.backbones.text import minilm_dir

    src = minilm_dir()
    text_dir = tmp_path_factory.mktemp("tiny-text")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt",
                 "special_tokens_map.json"):
        if (src / name).is_file():
            shutil.copy(src / name, text_dir / name)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=128), add_pooling_layer=False
              ).save_pretrained(text_dir, safe_serialization=True)
    return text_dir


@pytest.fixture(scope="session")
def tiny_backbones(tiny_text_dir: Path):
    """Two tiny registered backbones for fast strategy logic: ``tiny-cnn`` (a 2-block CNN at
    16 px, random weights) and ``tiny-text`` (the BERT of ``tiny_text_dir``). Removed from
    the registry afterwards."""
    from transferkit.backbones import REGISTRY, BackboneEntry, ScratchCNN, register
    from transferkit.backbones.text import text_from_dir

    register(BackboneEntry("tiny-cnn", "image", "test: tiny CNN, random weights",
                           lambda keep_head=False: ScratchCNN(image_size=16, widths=(8, 16))))
    register(BackboneEntry("tiny-text", "text", "test: tiny BERT, random weights",
                           lambda keep_head=False: text_from_dir(tiny_text_dir, "tiny-text")))
    yield {"image": "tiny-cnn", "text": "tiny-text"}
    REGISTRY.pop("tiny-cnn", None)
    REGISTRY.pop("tiny-text", None)


TINY_TEXTS = {
    "animal": ["the dog barked at the cat", "a horse ran across the field",
               "the owl hunts mice at night", "cows graze in the meadow",
               "a fox slipped under the fence", "the whale surfaced to breathe",
               "bees buzz around the hive", "the lion slept in the shade"],
    "food": ["fresh bread from the oven", "a bowl of hot tomato soup",
             "she sliced apples for the pie", "rice cooked with garlic and ginger",
             "cheese melted on the pizza", "a cup of sweet black coffee",
             "grilled fish with lemon", "pancakes with maple syrup"],
    "vehicle": ["the train left the station late", "a red bus stopped at the corner",
                "the truck carried timber north", "he rode his bicycle to work",
                "the plane landed in fog", "a ferry crossed the bay",
                "the taxi honked twice", "a tram rattled down the hill"],
}


@pytest.fixture(scope="session")
def tiny_data(sample_dir: Path):
    """Small real labelled sets per modality: (train, val) with 3 classes each."""
    from transferkit.data import Dataset, from_folder, from_texts

    ds = from_folder(sample_dir)
    names = ["bag", "sneaker", "trouser"]
    keep = [i for i, lab in enumerate(ds.labels) if ds.class_names[lab] in names]
    items = [ds.items[i] for i in keep]
    labels = [names.index(ds.class_names[ds.labels[i]]) for i in keep]
    images = Dataset(items=items, labels=labels, class_names=names, source="tiny-images")
    idx = {c: [i for i, lab in enumerate(labels) if lab == c] for c in range(3)}
    img_train = images.subset([i for c in range(3) for i in idx[c][:8]])
    img_val = images.subset([i for c in range(3) for i in idx[c][8:12]])
    texts = [t for c in TINY_TEXTS for t in TINY_TEXTS[c]]
    tlabels = [c for c in TINY_TEXTS for _ in TINY_TEXTS[c]]
    text = from_texts(texts, tlabels, source="tiny-texts")
    pick = [i for c in range(3) for i in range(8 * c, 8 * c + 6)]
    rest = [i for c in range(3) for i in range(8 * c + 6, 8 * c + 8)]
    return {"image": (img_train, img_val), "text": (text.subset(pick), text.subset(rest))}


@pytest.fixture(scope="session")
def two_domains(sample_dir: Path):
    """Train/test of 'clothes' (the sample) and 'negative' (the same classes, inverted
    images, a different half of the sample): one trunk, inputs of opposite statistics."""
    import numpy as np
    from PIL import Image

    from transferkit.data import from_arrays, from_folder

    ds = from_folder(sample_dir)
    imgs = np.stack([np.asarray(Image.open(p)) for p in ds.items])
    labels = np.asarray(ds.labels)
    order = np.random.default_rng(0).permutation(len(ds))
    parts = {"clothes": (imgs, order[: len(order) // 2]),
             "negative": (255 - imgs, order[len(order) // 2:])}
    train, test = {}, {}
    for t, (x, idx) in parts.items():
        cut = int(0.7 * len(idx))
        for part, sel in ((train, idx[:cut]), (test, idx[cut:])):
            part[t] = from_arrays(list(x[sel]), [ds.class_names[y] for y in labels[sel]],
                                  class_names=ds.class_names, source=f"{t}")
    return train, test
