"""Metrics against hand-computed values, and a report that renders in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from transferkit.evaluation import classification_metrics, write_report
from transferkit.evaluation.report import gallery_order


def test_metrics_hand_computed() -> None:
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 1, 1, 1, 2, 0]
    m = classification_metrics(y_true, y_pred, None, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]  # rows = true
    # per-class F1: a: p=1/2 r=1/2 -> .5; b: p=2/3 r=1 -> .8; c: p=1 r=1/2 -> 2/3
    assert m["per_class"]["b"]["f1"] == pytest.approx(0.8)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert m["roc_auc_ovr_macro"] is None and m["log_loss"] is None
    json.dumps(m)


def test_auc_skips_absent_class_and_binary_case() -> None:
    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.3, 0.6, 0.1], [0.1, 0.8, 0.1]])
    m = classification_metrics(y, proba.argmax(1), proba, ["x", "y", "absent"])
    assert m["per_class"]["absent"]["roc_auc"] is None
    assert m["per_class"]["x"]["roc_auc"] == pytest.approx(1.0)
    assert m["roc_auc_ovr_macro"] == pytest.approx(1.0)
    pb = np.array([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3], [0.2, 0.8]])
    mb = classification_metrics(y, pb.argmax(1), pb, ["neg", "pos"])
    assert mb["roc_auc_ovr_macro"] == pytest.approx(0.75)
    json.dumps(mb)


@pytest.fixture(scope="module")
def digits_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, list]:
    x, y = load_digits(return_X_y=True)
    clf = LogisticRegression(max_iter=200).fit(x[:200], y[:200])
    proba = clf.predict_proba(x[1500:1600])
    y_true = y[1500:1600]
    images = [np.kron((x[i] * 16).clip(0, 255).reshape(8, 8), np.ones((4, 4))).astype(np.uint8)
              for i in range(1500, 1600)]
    names = [f"digit {d}" for d in range(9)] + ["<script>alert(1)</script>"]
    out = tmp_path_factory.mktemp("report")
    m = classification_metrics(y_true, proba.argmax(1), proba, names)
    path = write_report(out, title="Digits <test>", metrics=m, y_true=y_true,
                        y_pred=proba.argmax(1), proba=proba, class_names=names, items=images,
                        info={"backbone": "pixels", "skipped_files": ["a/b.png: corrupt"]},
                        tables=[{"title": "Comparison", "columns": ["model", "accuracy"],
                                 "rows": [["baseline", 0.5], ["transfer", 0.9]]}])
    return path, proba.argmax(1) != y_true, names


def test_report_is_self_contained_and_escaped(digits_report) -> None:
    path, wrong, _ = digits_report
    html = path.read_text(encoding="utf-8")
    srcs = re.findall(r'<img[^>]*src="([^"]*)"', html)
    assert len(srcs) >= 3 + 48 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in html and "https://" not in html and 'src="/' not in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert "Digits &lt;test&gt;" in html and "1 unreadable file(s) skipped" in html
    tiles = re.findall(r'<div class="tile( wrong)?">', html)
    n_wrong = int(wrong.sum())
    assert n_wrong > 0
    assert [bool(t) for t in tiles[:n_wrong]] == [True] * n_wrong  # mistakes first
    assert not any(tiles[n_wrong:])


def test_gallery_order() -> None:
    order = gallery_order(np.array([0, 1, 1, 0]), np.array([0, 0, 1, 1]),
                          np.array([0.9, 0.6, 0.7, 0.8]))
    assert order == [3, 1, 2, 0]


def test_text_items_are_shown_escaped(tmp_path: Path) -> None:
    y = np.array([0, 1])
    proba = np.array([[0.7, 0.3], [0.6, 0.4]])
    m = classification_metrics(y, proba.argmax(1), proba, ["pos", "neg"])
    long_text = "<b>bold</b> " + "word " * 200
    path = write_report(tmp_path, title="t", metrics=m, y_true=y, y_pred=proba.argmax(1),
                        proba=proba, class_names=["pos", "neg"], items=[long_text, "short"],
                        item_kind="text")
    html = path.read_text(encoding="utf-8")
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold</b>" not in html
    assert "…" in html


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("headless Chromium is needed to check the report renders: install "
                    "Debian's 'chromium' package (make test does)")
    return exe


def test_report_renders_in_headless_chromium(digits_report, tmp_path: Path) -> None:
    path, _, _ = digits_report
    flags = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1200,2400",
                    path.as_uri()], check=True, timeout=90, capture_output=True)
    arr = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert arr.shape == (2400, 1200)
    assert arr.std() > 20 and len(np.unique(arr)) > 50  # plots and thumbnails were drawn
    dom = subprocess.run([*flags, "--dump-dom", path.as_uri()], check=True, timeout=90,
                         capture_output=True, text=True).stdout
    assert "Confusion matrix" in dom and "Digits &lt;test&gt;" in dom
