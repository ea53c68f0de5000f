"""Data roles: unlabelled data, domain tags and weights, named roles and evaluations, classes
unseen in training, class side information, and strategy options checked before any data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from transferkit.cli import app
from transferkit.data import (
    Dataset,
    Splits,
    from_folder,
    from_texts,
    load_data,
    make_splits,
    read_attributes,
    read_descriptions,
)
from transferkit.data.classinfo import class_texts
from transferkit.errors import DataError
from transferkit.runs import fit_run


def test_unlabelled_folders_and_csvs(small_image_dir: Path, tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in sorted(small_image_dir.glob("*/*.png"))[:5]:
        shutil.copy(f, flat / f"{f.parent.name}_{f.name}")
    ds = load_data(flat)
    assert ds.labels is None and len(ds) == 5 and ds.class_names == []
    tree = from_folder(small_image_dir, labelled=False)  # class folders not read as labels
    assert tree.labels is None and len(tree) == 36
    (tmp_path / "m.csv").write_text("path\n" + "\n".join(
        f"flat/{p.name}" for p in sorted(flat.iterdir())) + "\n")
    assert load_data(tmp_path / "m.csv").labels is None
    (tmp_path / "t.csv").write_text("text\nfirst text\nsecond text\n")
    texts = load_data(tmp_path / "t.csv")
    assert texts.modality == "text" and texts.labels is None and len(texts) == 2
    tdir = tmp_path / "texts"
    tdir.mkdir()
    (tdir / "a.txt").write_text("one")
    (tdir / "b.txt").write_text("two")
    assert load_data(tdir).labels is None
    with pytest.raises(DataError, match="its own sub-folder"):  # where labels are required
        load_data(flat, labelled=True)
    with pytest.raises(DataError, match="training data has no labels"):
        make_splits(ds)


def test_domain_tags_and_sample_weights_follow_subsets() -> None:
    ds = from_texts(["a", "b", "c"], ["x", "y", "x"])
    tagged = Dataset(ds.items, ds.labels, ds.class_names, "text", domain="source",
                     weights=np.array([0.5, 1.0, 2.0]))
    sub = tagged.subset([2, 0])
    assert sub.domain == "source" and sub.weights.tolist() == [2.0, 0.5]
    with pytest.raises(DataError, match="3 items but 2 weights"):
        Dataset(ds.items, ds.labels, ds.class_names, "text", weights=np.ones(2))
    with pytest.raises(DataError, match="finite and >= 0"):
        Dataset(ds.items, ds.labels, ds.class_names, "text", weights=np.array([1, -1, 0]))


def test_named_roles_and_unseen_classes() -> None:
    train = from_texts(["a", "b", "c", "d"], ["cat", "dog", "cat", "dog"])
    test = from_texts(["e", "f"], ["dog", "fox"])
    with pytest.raises(DataError, match="label 'fox' is not one of the model's classes"):
        make_splits(train, test=test)
    s = make_splits(train, test=test, unseen_classes=True)
    assert s.train.class_names == s.test.class_names == ["cat", "dog", "fox"]
    assert s.test.labels.tolist() == [1, 2] and s.train.class_counts()["fox"] == 0
    target = from_texts(["g", "h"])
    roles = Splits(train=train).with_role("target", target)
    s2 = make_splits(roles, test=test, unseen_classes=True)
    assert s2.roles() == ["train", "test", "target"] and s2["target"].labels is None
    with pytest.raises(KeyError, match="no 'target-test' data in this run"):
        s2["target-test"]


def test_class_descriptions_and_attribute_tables(tmp_path: Path) -> None:
    assert read_descriptions({"cat": " a small feline "}) == {"cat": "a small feline"}
    p = tmp_path / "d.json"
    p.write_text('{"cat": "a feline",\n "dog": ""}')
    with pytest.raises(DataError, match="description of class 'dog' is empty"):
        read_descriptions(p)
    p.write_text('{"cat": "a feline",\n "dog" "x"}')
    with pytest.raises(DataError, match=r"invalid JSON at line 2, column 8"):
        read_descriptions(p)
    c = tmp_path / "d.csv"
    c.write_text("class,description\ncat,a feline\ndog,a canine\ncat,again\n")
    with pytest.raises(DataError, match=r"d.csv:4: class 'cat' is described twice"):
        read_descriptions(c)
    c.write_text("label,description\ncat,a feline\n")
    assert read_descriptions(c) == {"cat": "a feline"}
    assert class_texts(["cat", "big_dog"], {"cat": "a feline"}, "a photo of a {}") == [
        "a feline", "a photo of a big dog"]
    with pytest.raises(DataError, match=r"descriptions name classes not in the data: \['cow'\]"):
        class_texts(["cat"], {"cow": "moo"})

    a = tmp_path / "attrs.csv"
    a.write_text("class,has_fur,legs\ncat,1,4\nbird,0,2\n")
    table = read_attributes(a)
    assert table.attributes == ["has_fur", "legs"]
    assert table.for_classes(["bird", "cat"]).tolist() == [[0, 2], [1, 4]]
    with pytest.raises(DataError, match=r"no attribute row for class\(es\) 'fish'"):
        table.for_classes(["cat", "fish"])
    a.write_text("class,has_fur,legs\ncat,1,4\nbird,no,2\n")
    with pytest.raises(DataError, match=r"attrs.csv:3: class 'bird', column 'has_fur': 'no'"):
        read_attributes(a)
    a.write_text("class,has_fur\ncat,1\ncat,0\n")
    with pytest.raises(DataError, match=r"attrs.csv:3: class 'cat' has a second row"):
        read_attributes(a)
    a.write_text("species,has_fur\ncat,1\n")
    with pytest.raises(DataError, match="no class column"):
        read_attributes(a)


def test_named_evaluations_side_by_side(small_image_dir: Path, tmp_path: Path) -> None:
    shifted = tmp_path / "shifted"
    from PIL import Image, ImageOps

    for f in sorted(small_image_dir.glob("*/*.png")):
        if int(f.stem.split("_")[-1]) % 3 == 0:
            (shifted / f.parent.name).mkdir(parents=True, exist_ok=True)
            ImageOps.invert(Image.open(f).convert("L")).save(shifted / f.parent.name / f.name)
    res = fit_run(small_image_dir, tmp_path / "run", backbone="pixels",
                  roles={"target-test": shifted}, seed=0)
    assert set(res.evaluations) == {"test", "target-test"}
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(m["evaluations"]) == {"test", "target-test"}
    assert m["evaluations"]["test"]["accuracy"] == m["accuracy"]
    assert m["evaluations"]["target-test"]["samples"] == len(res.splits["target-test"])
    html = (tmp_path / "run" / "report.html").read_text()
    assert "Evaluations side by side" in html and "target-test" in html
    assert (tmp_path / "run" / "eval-target-test" / "report.html").is_file()
    assert res.val_score is not None  # the probe's cross-validated accuracy


def test_unseen_test_classes_for_a_zero_shot_run(tiny_backbones, tiny_data,
                                                 tmp_path: Path) -> None:
    train, val = tiny_data["text"]
    only_two = train.subset(np.flatnonzero(train.labels < 2)).align_classes(
        train.class_names[:2])
    res = fit_run(only_two, tmp_path / "zs", backbone=tiny_backbones["text"],
                  strategy="zeroshot", test=val, cache=False)
    assert res.model.class_names == ["animal", "food", "vehicle"]  # the unseen class too
    assert res.evaluation.metrics["per_class"]["vehicle"]["support"] == 2


def test_strategy_options_are_checked_before_any_data_is_read(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"strategy 'probe' takes no option 'l2sp' \(--l2sp\)"):
        fit_run(tmp_path / "no-such-data", tmp_path / "r", strategy="probe", l2sp=0.1)
    with pytest.raises(ValueError, match="--C must be a positive number"):
        fit_run(tmp_path / "no-such-data", tmp_path / "r", strategy="probe", C="lots")
    assert not (tmp_path / "r").exists()


def test_cli_refuses_an_option_the_strategy_does_not_take(small_image_dir: Path,
                                                          tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["fit", str(small_image_dir), "--out", str(tmp_path / "r"),
                                   "--strategy", "probe", "--l2sp", "0.1"])
    assert res.exit_code == 2 and "takes no option 'l2sp' (--l2sp)" in res.output
    res = CliRunner().invoke(app, ["fit", str(small_image_dir), "--out", str(tmp_path / "r"),
                                   "--backbone", "pixels", "--head", "mlp", "-o", "hidden=16"])
    assert res.exit_code == 0, res.output
    from transferkit.model import TransferModel

    head = TransferModel.load(tmp_path / "r").head  # the saved model, not the echoed options
    assert head.config["kind"] == "mlp" and head.config["hidden"] == [16]
    assert [m.out_features for m in head.body if hasattr(m, "out_features")] == [16, 3]
    listed = CliRunner().invoke(app, ["strategies", "--json"])
    assert listed.exit_code == 0 and "contrastive" in listed.output
