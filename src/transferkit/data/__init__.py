"""Data layer: image folders, CSV manifests and arrays, validated, with seeded splits."""

from transferkit.data.augment import AUGMENT_PRESETS, augment_transform
from transferkit.data.dataset import (
    Dataset,
    Splits,
    from_arrays,
    from_csv,
    from_folder,
    load_data,
    make_splits,
    stratified_split,
)
from transferkit.data.images import item_key, load_image
from transferkit.data.samples import fashion_mnist_sample, wordnet_glosses
from transferkit.data.text import from_text_csv, from_text_folder, from_texts

__all__ = [
    "AUGMENT_PRESETS",
    "Dataset",
    "Splits",
    "augment_transform",
    "fashion_mnist_sample",
    "from_arrays",
    "from_csv",
    "from_folder",
    "from_text_csv",
    "from_text_folder",
    "from_texts",
    "item_key",
    "load_data",
    "load_image",
    "make_splits",
    "stratified_split",
    "wordnet_glosses",
]
