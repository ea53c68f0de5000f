"""Helpers of the icon case study: augmented copies, heads chosen on validation, scores,
most-confused pairs and the HTML report (transferkit's evaluation report)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from transferkit.data.dataset import Dataset
from transferkit.heads import fit_head

C_GRID = (0.1, 1.0)


def augment_icon(img: Image.Image) -> Image.Image:
    """Rotation up to 10 degrees, shift up to 10%, zoom 0.9-1.1 on a white fill, colour
    jitter 0.2 (hue 0.05); no flip (it would turn go-next into go-previous)."""
    from torchvision.transforms import v2

    t = v2.Compose([v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1),
                                    fill=(255, 255, 255)),
                    v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.05)])
    return t(img.convert("RGB"))


def augmented_copies(ds: Dataset, out: Path, k: int, seed: int = 0) -> Dataset:
    """``k`` augmented copies of every training image, written once as PNGs (so their
    features are extracted once and cached like any image); labels as the originals'."""
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    items, labels = [], []
    for i, (item, lab) in enumerate(zip(ds.items, ds.labels, strict=True)):
        with Image.open(item) as im:
            img = im.convert("RGB")
        for j in range(k):
            p = out / f"{i:05d}_{j}.png"
            augment_icon(img).save(p)
            items.append(p)
            labels.append(int(lab))
    return Dataset(items=items, labels=np.asarray(labels), class_names=list(ds.class_names),
                   source=str(out))


def _dense_head(x: np.ndarray, y: np.ndarray, num_classes: int, C: float) -> Any:
    """The seed's dense head: standardised features -> 512 ReLU units -> softmax (scikit-
    learn's MLP, Adam, 40 epochs of mini-batches of 128, L2 alpha = 1e-3 / C)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(512,), alpha=1e-3 / C, batch_size=128,
                            max_iter=40, random_state=0).fit(scaler.transform(x), y)

    def proba(f: np.ndarray) -> np.ndarray:
        out = np.zeros((len(f), num_classes))
        out[:, clf.classes_] = clf.predict_proba(scaler.transform(f))
        return out
    return proba


def fit_on_val(kind: str, x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray,
               num_classes: int) -> dict[str, Any]:
    """A head of ``kind`` ("logreg": transferkit's probe head; "mlp": the dense head) per C
    in C_GRID; the one with the best validation accuracy (ties: the smaller C). Returns its
    predict-proba function, C, validation accuracy, seconds."""
    t0 = time.perf_counter()
    best: tuple[float, float, Any] | None = None
    for C in C_GRID:
        if kind == "mlp":
            fn = _dense_head(x, y, num_classes, C)
        else:
            head = fit_head(x, y, num_classes, kind=kind, C=C, seed=0, tol=1e-3)
            fn = (lambda h: (lambda f: _proba(h, f)))(head)
        acc = float((fn(xv).argmax(1) == yv).mean())
        if best is None or acc > best[0]:
            best = (acc, C, fn)
    assert best is not None
    return {"head": best[2], "C": best[1], "val": best[0],
            "seconds": time.perf_counter() - t0}


def _proba(head: Any, f: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return head(torch.as_tensor(np.asarray(f, np.float32))).numpy()


def score(proba: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Top-1, top-5 and macro F1 (over the classes present) of probabilities against y."""
    from sklearn.metrics import f1_score

    top5 = np.argsort(-proba, axis=1)[:, :5]
    pred = proba.argmax(1)
    return {"accuracy": float((pred == y).mean()),
            "top5": float((top5 == y[:, None]).any(axis=1).mean()),
            "macro_f1": float(f1_score(y, pred, labels=np.unique(y), average="macro",
                                       zero_division=0))}


def confused_pairs(y: np.ndarray, pred: np.ndarray, names: list[str], k: int = 15
                   ) -> list[tuple[str, str, int]]:
    """The ``k`` class pairs most often mistaken for each other (both directions summed)."""
    counts: dict[tuple[int, int], int] = {}
    for a, b in zip(y.tolist(), pred.tolist(), strict=True):
        if a != b:
            key = (min(a, b), max(a, b))
            counts[key] = counts.get(key, 0) + 1
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    return [(names[a], names[b], n) for (a, b), n in top]


def write_case_report(out: Path, best: str, rows: dict[str, dict[str, Any]],
                      proba: np.ndarray, splits: Any, pairs: list[tuple[str, str, int]]
                      ) -> Path:
    """transferkit's HTML report of the chosen row (per-class table, gallery with
    confidence, confusion), with the comparison and the most-confused pairs as tables."""
    from transferkit.data.images import thumbnail_image
    from transferkit.evaluation import write_report
    from transferkit.evaluation.metrics import classification_metrics

    y = np.asarray(splits.test.labels)
    names = list(splits.train.class_names)
    metrics = classification_metrics(y, proba.argmax(1), proba, names)
    comp = [[k, v["val_accuracy"], v["accuracy"], v["top5"], v["macro_f1"]]
            for k, v in rows.items()]
    return write_report(out, title=f"Icons across theme groups: {best} (chosen on "
                                   "validation)", metrics=metrics, y_true=y,
                        y_pred=proba.argmax(1), proba=proba, class_names=names,
                        items=splits.test.items, load_item=thumbnail_image,
                        tables=[{"title": "Every row (validation picks, test reports)",
                                 "columns": ["row", "val acc", "test top-1", "test top-5",
                                             "macro F1"], "rows": comp},
                                {"title": "Most confused pairs", "columns":
                                 ["class", "class", "mistakes"], "rows": pairs}])
