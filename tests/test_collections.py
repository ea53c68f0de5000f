"""The case-study data builders on small fake package trees: clip art and icon themes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from transferkit.data.collections import clipart_task, on_white
from transferkit.data.icons import icon_task, theme_groups
from transferkit.data.load import load_data
from transferkit.errors import DataError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import build_collections

NAMES = [f"thing-{i:02d}" for i in range(12)]


def _drawing(seed: int, size: int = 48) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    for _ in range(4):
        lo = rng.integers(0, size // 2, 2)
        hi = lo + rng.integers(8, size // 2, 2)
        x0, y0, x1, y1 = (int(v) for v in (*lo, *hi))
        col = (*tuple(int(c) for c in rng.integers(0, 255, 3)), 255)
        (d.ellipse if rng.random() < 0.5 else d.rectangle)([x0, y0, x1, y1], fill=col)
    return img


def _theme(root: Path, theme: str, seed: int, names: list[str], noise: int = 0) -> None:
    folder = root / theme / "48x48" / "actions"
    folder.mkdir(parents=True)
    for i, n in enumerate(names):
        img = _drawing(seed * 1000 + i)
        if noise:  # a sibling theme: the same drawing, retouched
            a = np.asarray(img).astype(int)
            a[..., :3] = np.clip(a[..., :3] + noise, 0, 255)
            img = Image.fromarray(a.astype(np.uint8), "RGBA")
        img.save(folder / f"{n}.png")


@pytest.fixture()
def icon_root(tmp_path: Path) -> Path:
    root = tmp_path / "icons"
    _theme(root, "A", 1, NAMES)
    _theme(root, "B", 1, NAMES, noise=6)  # derived from A
    _theme(root, "C", 2, NAMES)
    _theme(root, "D", 3, NAMES[:10])
    _theme(root, "E", 4, NAMES)
    (root / "A" / "48x48" / "actions" / "thing-00-symbolic.png").write_bytes(b"")  # ignored
    return root


def test_theme_groups_join_derived_themes_only(icon_root: Path, tmp_path: Path) -> None:
    m = icon_task(tmp_path / "out", themes=("A", "B", "C", "D", "E"), test_themes=("C",),
                  val_themes=("D",), min_themes=3, root=icon_root, size=32)
    assert m["groups"] == [["A", "B"], ["C"], ["D"], ["E"]]
    assert m["near_duplicate_fraction"]["A|B"] == 1.0
    assert m["near_duplicate_fraction"]["A|C"] < 0.25
    splits = load_data(tmp_path / "out")
    assert len(splits.train.class_names) == 12
    # every split keeps a theme group on one side: the sibling B is never in val or test
    test_files = {p.name for p in (tmp_path / "out" / "test").rglob("*.png")}
    train_files = {p.name for p in (tmp_path / "out" / "train").rglob("*.png")}
    assert test_files == {"C.png"} and train_files == {"A.png", "B.png", "E.png"}
    assert len(splits.test) == 12 and len(splits.val) == 10


def test_icons_name_dropped_classes_and_refuse_split_groups(icon_root: Path,
                                                           tmp_path: Path) -> None:
    # with test = E and val = C, train holds A, B and D: thing-10/11 are not in D, still 2
    # in train; with min_train 3 they are named as dropped
    m = icon_task(tmp_path / "o1", themes=("A", "B", "C", "D", "E"), test_themes=("E",),
                  val_themes=("C",), min_themes=3, min_train=3, root=icon_root, size=32)
    assert sorted(m["dropped"]) == ["thing-10", "thing-11"]
    assert "2 training" in m["dropped"]["thing-10"]
    with pytest.raises(DataError, match="one group"):
        icon_task(tmp_path / "o2", themes=("A", "B", "C"), test_themes=("A",),
                  val_themes=("B",), min_themes=2, root=icon_root, size=32)


def test_svg_that_fails_to_render_is_listed(icon_root: Path, tmp_path: Path) -> None:
    svg = icon_root / "E" / "scalable" / "actions"
    svg.mkdir(parents=True)
    (svg / "thing-99.svg").write_text("<svg this is not svg")
    for t in ("A", "C", "D"):  # thing-99 is in 4 themes: wanted, and broken in E
        _drawing(99).save(icon_root / t / "48x48" / "actions" / "thing-99.png")
    m = icon_task(tmp_path / "o", themes=("A", "B", "C", "D", "E"), test_themes=("C",),
                  val_themes=("D",), min_themes=4, root=icon_root, size=32)
    assert [Path(f["file"]).name for f in m["failed"]] == ["thing-99.svg"]


def test_clipart_balanced_on_white_bombs_skipped(tmp_path: Path) -> None:
    root = tmp_path / "png"
    for c, n in (("animals/birds", 7), ("tools", 9)):
        (root / c).mkdir(parents=True)
        for i in range(n):
            _drawing(i + len(c), size=40 + i).save(root / c / f"{i}.png")
    Image.new("1", (300, 300)).save(root / "tools" / "huge.png")  # over max_pixels below
    m = clipart_task(tmp_path / "out", categories=("animals/birds", "tools"), size=24,
                     root=root, max_pixels=50_000)
    assert [Path(s["file"]).name for s in m["skipped"]] == ["huge.png"]
    assert m["per_class"] == 7  # balanced on the smallest category
    assert m["classes"]["tools"] == m["classes"]["animals_birds"]
    assert sum(m["classes"]["tools"].values()) == 7
    img = Image.open(next((tmp_path / "out" / "train" / "tools").glob("*.png")))
    assert img.size == (24, 24) and img.mode == "RGB"
    assert img.getpixel((0, 0)) == (255, 255, 255)  # transparent corner composited on white
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["per_class"] == 7
    with pytest.raises(DataError, match="too few usable images"):
        clipart_task(tmp_path / "o2", categories=("animals/birds", "tools"), per_class=8,
                     root=root, max_pixels=50_000)


def test_on_white_respects_alpha() -> None:
    img = Image.new("RGBA", (10, 20), (255, 0, 0, 0))
    img.paste((0, 0, 255, 255), (0, 0, 10, 10))
    out = on_white(img, 20)
    assert out.getpixel((10, 5)) == (0, 0, 255) and out.getpixel((10, 15)) == (255, 255, 255)
    assert out.getpixel((2, 5)) == (255, 255, 255)  # padding left and right


def test_tool_names_missing_package_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture
                                           ) -> None:
    rc = build_collections.main(["clipart", str(tmp_path / "o"), "--root",
                                 str(tmp_path / "nothing")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error:") and "openclipart-png" in err
    rc = build_collections.main(["icons", str(tmp_path / "o"), "--root",
                                 str(tmp_path / "nothing")])
    err = capsys.readouterr().err
    assert rc == 2 and "icon-theme" in err and "apt-get install" in err


def test_theme_groups_need_enough_shared_names() -> None:
    v = np.ones(4) / 2.0
    groups, pairs = theme_groups({"a": {"x": v}, "b": {"x": v}})
    assert groups == [["a"], ["b"]] and pairs == {}  # one shared name is no evidence
