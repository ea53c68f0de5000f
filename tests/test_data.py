"""Data layer: folders, CSV manifests, arrays, image modes, splits and clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferkit.data import (
    from_arrays,
    from_csv,
    from_folder,
    load_data,
    load_image,
    make_splits,
    stratified_split,
)
from transferkit.data.dataset import Splits
from transferkit.errors import DataError, ImageReadError


def _png(path: Path, img: Image.Image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def test_folder_reads_classes_sorted(sample_dir: Path) -> None:
    ds = from_folder(sample_dir)
    assert len(ds) == 600
    assert ds.class_names == sorted(ds.class_names) and len(ds.class_names) == 10
    assert set(ds.class_counts().values()) == {60}


def test_folder_with_train_val_test(tmp_path: Path, sample_dir: Path) -> None:
    for split, n in (("train", 5), ("val", 2), ("test", 3)):
        for cls in ("bag", "coat"):
            for f in sorted((sample_dir / cls).glob("*.png"))[:n]:
                dst = tmp_path / split / cls / f.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(f, dst)
    splits = load_data(tmp_path)
    assert isinstance(splits, Splits)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (10, 4, 6)
    assert splits.test.class_names == ["bag", "coat"]


def test_no_images_found(tmp_path: Path) -> None:
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DataError, match="no images found"):
        from_folder(tmp_path)
    _png(tmp_path / "loose.png", Image.new("L", (8, 8)))
    with pytest.raises(DataError, match="its own sub-folder"):
        from_folder(tmp_path)
    with pytest.raises(DataError, match="no such"):
        load_data(tmp_path / "nope")


def test_image_modes_are_converted_to_rgb(tmp_path: Path) -> None:
    grey = _png(tmp_path / "g.png", Image.new("L", (10, 7), 128))
    rgba = Image.new("RGBA", (5, 5), (255, 0, 0, 0))
    rgba_p = _png(tmp_path / "a.png", rgba)
    pal = Image.new("P", (6, 6))
    pal.putpalette([0, 0, 255] * 256)
    pal_p = _png(tmp_path / "p.png", pal)
    deep = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    deep_p = _png(tmp_path / "d.png", deep)
    assert load_image(grey).mode == "RGB" and load_image(grey).size == (10, 7)
    assert load_image(rgba_p).getpixel((0, 0)) == (255, 255, 255)  # transparent -> white
    assert load_image(pal_p).getpixel((0, 0)) == (0, 0, 255)
    assert load_image(deep_p).getpixel((0, 0)) == (255, 255, 255)  # 16-bit max -> 255
    assert load_image(np.zeros((3, 3), np.uint16)).mode == "RGB"
    assert load_image(np.ones((3, 3, 4), np.float32)).getpixel((0, 0)) == (255, 255, 255)
    with pytest.raises(DataError, match="shape"):
        load_image(np.zeros((2, 3, 4, 5)))


def test_corrupt_and_truncated_images_name_the_file(tmp_path: Path, sample_dir: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(ImageReadError, match="bad.png"):
        load_image(bad)
    good = next((sample_dir / "bag").glob("*.png")).read_bytes()
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(good[: len(good) // 2])
    with pytest.raises(ImageReadError, match="trunc.png"):
        load_image(trunc)


def test_csv_manifest(tmp_path: Path, sample_dir: Path) -> None:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for f in sorted((sample_dir / "bag").glob("*.png"))[:2]:
        shutil.copy(f, imgs / f.name)
    names = sorted(p.name for p in imgs.iterdir())
    (tmp_path / "m.csv").write_text(
        "path,label\n" + "\n".join(f'"imgs/{n}",bag' for n in names) + "\n", encoding="utf-8")
    ds = from_csv(tmp_path / "m.csv")
    assert len(ds) == 2 and ds.class_names == ["bag"]
    assert all(p.is_absolute() and p.exists() for p in ds.items)


@pytest.mark.parametrize("content, message", [
    ("file,label\nx.png,a\n", "missing column"),
    ("path,label\n../outside.png,a\n", "escapes the CSV's folder"),
    ("path,label\n/etc/passwd,a\n", "escapes the CSV's folder"),
    ("path,label\nmissing.png,a\n", r"m.csv:2: file not found"),
    ("path,label\n", "no rows"),
])
def test_csv_errors_name_the_row(tmp_path: Path, content: str, message: str) -> None:
    sub = tmp_path / "d"
    sub.mkdir()
    (tmp_path / "outside.png").write_bytes(b"x")
    (sub / "m.csv").write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        from_csv(sub / "m.csv")


def test_csv_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_bytes("path,label\nx.png,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"not UTF-8 \(invalid byte 0x[0-9a-f]{2} at line 2"):
        from_csv(tmp_path / "m.csv")


def test_stratified_split_is_deterministic_and_stratified(sample_dir: Path) -> None:
    ds = from_folder(sample_dir)
    a1, b1 = stratified_split(ds, 0.25, seed=3)
    a2, b2 = stratified_split(ds, 0.25, seed=3)
    _, b3 = stratified_split(ds, 0.25, seed=4)
    assert b1.items == b2.items and a1.items == a2.items
    assert b1.items != b3.items
    assert set(b1.class_counts().values()) == {15}
    assert not set(map(str, a1.items)) & set(map(str, b1.items))


def test_class_too_small_to_split(tmp_path: Path) -> None:
    for i in range(3):
        _png(tmp_path / "big" / f"{i}.png", Image.new("L", (4, 4), i))
    _png(tmp_path / "tiny" / "0.png", Image.new("L", (4, 4)))
    with pytest.raises(DataError, match="class 'tiny' has 1 image"):
        make_splits(from_folder(tmp_path))


def test_unknown_label_at_evaluation_names_the_file(tmp_path: Path) -> None:
    _png(tmp_path / "zebra" / "z.png", Image.new("L", (4, 4)))
    ds = from_folder(tmp_path)
    with pytest.raises(DataError, match=r"z.png: label 'zebra' is not one of the model's"):
        ds.align_classes(["bag", "coat"])


def test_arrays_with_string_or_int_labels() -> None:
    x = np.zeros((4, 8, 8), np.uint8)
    ds = from_arrays(x, ["b", "a", "b", "a"])
    assert ds.class_names == ["a", "b"] and ds.labels.tolist() == [1, 0, 1, 0]
    ds2 = from_arrays(x, [0, 1, 1, 0], class_names=["cat", "dog"])
    assert ds2.labels.tolist() == [0, 1, 1, 0]
    with pytest.raises(DataError, match="4 images but 3 labels"):
        from_arrays(x, [0, 1, 1])
    with pytest.raises(DataError, match="not in class_names"):
        from_arrays(x, ["cat", "dog", "cow", "cat"], class_names=["cat", "dog"])
