"""Data layer: image folders, CSV manifests, texts and arrays, labelled or not, validated, with
seeded splits, named roles and class side information."""

from transferkit.data.augment import AUGMENT_PRESETS, augment_transform
from transferkit.data.classinfo import (
    AttributeTable,
    class_texts,
    read_attributes,
    read_descriptions,
)
from transferkit.data.dataset import (
    Dataset,
    Splits,
    encode_labels,
    from_arrays,
    from_folder,
    make_splits,
    stratified_split,
)
from transferkit.data.images import item_key, load_image
from transferkit.data.load import load_data
from transferkit.data.manifest import from_csv
from transferkit.data.samples import fashion_mnist_sample, wordnet_glosses
from transferkit.data.text import from_text_csv, from_text_folder, from_texts

__all__ = [
    "AUGMENT_PRESETS",
    "AttributeTable",
    "Dataset",
    "Splits",
    "augment_transform",
    "class_texts",
    "encode_labels",
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
    "read_attributes",
    "read_descriptions",
    "stratified_split",
    "wordnet_glosses",
]
