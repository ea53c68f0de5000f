"""`transferkit zeroshot`: learn from the seen classes' images and every class's side
information (descriptions or attributes), classify test images among seen and unseen classes.

Training never sees an image of an unseen class (those in the training data are set aside and
counted). The seen-class bias is calibrated on validation data made from the seen classes
alone: a seeded third of them play "unseen" while the others train, and the constant that
maximises H there is kept (never chosen on the test set). The run directory holds a model
that predicts every class (methods with a linear map), metrics.json and a report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from transferkit._io import write_json_atomic
from transferkit.backbones import Backbone, load_backbone
from transferkit.backbones.modality import IMAGE_BACKBONE, check_modality
from transferkit.data.classinfo import class_texts, read_attributes, read_descriptions
from transferkit.data.dataset import Dataset, stratified_split
from transferkit.errors import DataError
from transferkit.runs.data import one_dataset
from transferkit.runs.rundir import HasReport, preflight, run_directory
from transferkit.train.plan import mix
from transferkit.zeroshot import ATTRIBUTE_METHODS, METHODS, choose_gamma, gzsl_metrics


@dataclass
class ZeroShotResult(HasReport):
    """The metrics (GZSL with and without calibration, zero-shot unseen accuracy)."""

    metrics: dict[str, Any]
    out: Path
    seconds: float


def class_vectors(classes: Sequence[str], *, descriptions: Any = None,
                  attributes: str | Path | None = None,
                  text_backbone: str | Backbone = "minilm") -> tuple[np.ndarray, str]:
    """One vector per class: its attribute row, else the text embedding of its description
    (or name); and which it was."""
    if attributes is not None:
        return read_attributes(attributes).for_classes(classes), "attributes"
    desc = read_descriptions(descriptions) if descriptions is not None else {}
    empty = [c for c, d in desc.items() if not str(d).strip()]
    if empty:
        raise DataError(f"empty description for class(es) {', '.join(map(repr, empty))}")
    texts = class_texts(classes, {c: d for c, d in desc.items() if c in set(classes)})
    missing = [c for c in classes if c not in desc]
    tb = load_backbone(text_backbone) if not isinstance(text_backbone, Backbone) \
        else text_backbone
    what = "descriptions" if not missing else (
        f"descriptions ({len(missing)} class(es) by name: {', '.join(missing[:5])})")
    return tb.extract(texts, cache=False).features.astype(np.float64), what


def zeroshot_run(data: str | Path | Dataset, out: str | Path, *, unseen: Sequence[str],
                 descriptions: Any = None, attributes: str | Path | None = None,
                 method: str = "ridge", backbone: str | Backbone = IMAGE_BACKBONE,
                 test: str | Path | Dataset | None = None, test_fraction: float = 0.25,
                 seed: int = 0, image_size: int | None = None, cache: Any = True,
                 calibrate: bool = True, log: Callable[[str], None] | None = None,
                 progress: Any = None, overwrite: bool = False) -> ZeroShotResult:
    """Train ``method`` on the seen classes of ``data``; evaluate seen and unseen test images."""
    say = log or (lambda _m: None)
    unseen = _check_options(method, attributes, unseen)
    t0 = time.perf_counter()
    preflight(out, overwrite=overwrite, what="zero-shot run",
              inputs=[data, test, descriptions, attributes])
    ds = one_dataset(data, "DATA")
    test_ds = one_dataset(test, "--test")
    if test_ds is None:
        ds, test_ds = stratified_split(ds, test_fraction, seed, what="test")
    check_unseen(unseen, [*ds.class_names, *test_ds.class_names], descriptions, attributes)
    classes = list(dict.fromkeys([*ds.class_names, *test_ds.class_names, *unseen]))
    seen = [c for c in classes if c not in set(unseen)]
    if len(seen) < 2:
        raise ValueError(f"zero-shot needs at least two seen classes; seen: {seen}")
    check_modality(backbone, ds.modality, ds.source)
    bb = load_backbone(backbone) if not isinstance(backbone, Backbone) else backbone
    if image_size is not None:
        bb = bb.with_image_size(int(image_size))
    vectors, kind = _side_information(bb, method, classes, descriptions, attributes)
    train = ds.align_classes(classes)
    test_ds = test_ds.align_classes(classes)
    seen_idx = [classes.index(c) for c in seen]
    unseen_idx = [classes.index(c) for c in unseen]
    train = _without_unseen(train, unseen_idx, say)
    model, gamma = _fit_method(method, bb, train, vectors, seen_idx, seed=seed,
                               calibrate=calibrate, cache=cache, progress=progress, say=say)
    scores = model.scores(bb.extract(test_ds, cache=cache, progress=progress).features, vectors)
    raw = gzsl_metrics(scores, test_ds.labels, seen_idx, unseen_idx)
    cal = gzsl_metrics(scores, test_ds.labels, seen_idx, unseen_idx, gamma)
    offsets = np.zeros(len(classes))
    offsets[seen_idx] = gamma
    head = model.head(vectors, offsets)
    out = Path(out)
    with run_directory(out, overwrite=overwrite, what="zero-shot run",
                       inputs=[data, test, descriptions, attributes]) as where:
        if head is not None:
            from transferkit.model import TransferModel

            TransferModel(bb, head, classes, info={
                "strategy": "zeroshot-images", "method": method, "side": kind,
                "unseen": unseen, "gamma": gamma, "seed": seed}).save(where)
        metrics = {"method": method, "class_vectors": kind, "backbone": bb.name,
                   "seen": seen, "unseen": unseen, "train_images": len(train),
                   "test_images": len(test_ds), "gzsl": raw, "gzsl_calibrated": cal,
                   "zsl_unseen_accuracy": raw["zsl_unseen"], "seed": seed,
                   "seconds": round(time.perf_counter() - t0, 2)}
        pred = scores.copy()
        pred[:, seen_idx] -= gamma
        _report(where, test_ds, classes, pred.argmax(1), metrics)
        write_json_atomic(where / "metrics.json", {**metrics, "report": "report.html"})
    return ZeroShotResult(metrics, out, time.perf_counter() - t0)


def _without_unseen(train: Dataset, unseen_idx: list[int],
                    say: Callable[[str], None]) -> Dataset:
    """The training data without images of the unseen classes (said when there were any)."""
    held = np.isin(train.labels, unseen_idx)
    if held.any():
        say(f"note: {int(held.sum())} training image(s) of unseen class(es) set aside, never "
            f"used for training")
    return train.subset(np.flatnonzero(~held))


def _check_options(method: str, attributes: Any, unseen: Sequence[str]) -> list[str]:
    """The unseen class names, once --method, --attributes and --unseen agree."""
    if method not in (*METHODS, "clip"):
        raise ValueError(f"--method {method!r}: choose from {', '.join(METHODS)}, clip")
    if method in ATTRIBUTE_METHODS and attributes is None:
        raise ValueError(f"--method {method} needs --attributes (a class x attribute CSV)")
    names = [u.strip() for u in unseen if u.strip()]
    if not names:
        raise ValueError("--unseen: name at least one class that has no training images")
    return names


def _side_information(bb: Backbone, method: str, classes: list[str], descriptions: Any,
                      attributes: Any) -> tuple[np.ndarray, str]:
    """(class vectors, what they are): CLIP's text embeddings, or from the descriptions or
    attributes."""
    if method != "clip":
        return class_vectors(classes, descriptions=descriptions, attributes=attributes)
    if not hasattr(bb, "text_features"):
        raise ValueError(f"--method clip needs an image-text backbone (--backbone "
                         f"clip:<arch>@<weights>); {bb.name!r} embeds no text")
    desc = read_descriptions(descriptions) if descriptions is not None else {}
    vectors = bb.text_features(class_texts(classes, {c: d for c, d in desc.items()
                                                     if c in set(classes)},
                                           template="a photo of a {}"))
    return vectors, "CLIP text embeddings of the descriptions or names"


def _fit_method(method: str, bb: Backbone, train: Dataset, vectors: np.ndarray,
                seen_idx: list[int], *, seed: int, calibrate: bool, cache: Any,
                progress: Any, say: Callable[[str], None]) -> tuple[Any, float]:
    """(the fitted zero-shot model, its calibration offset on the seen classes)."""
    if method == "clip":  # nothing to train: images and class texts share one space
        say("clip: no training and no seen-class bias, so no calibration offset")
        return _Clip(), 0.0
    xtr = bb.extract(train, cache=cache, progress=progress).features
    gamma = _calibration(method, xtr, train.labels, vectors, seen_idx, seed, say) \
        if calibrate else 0.0
    local = {c: i for i, c in enumerate(seen_idx)}
    model = METHODS[method]().fit(xtr, np.array([local[int(c)] for c in train.labels]),
                                  vectors[seen_idx])
    return model, gamma


def check_unseen(unseen: Sequence[str], data_classes: Sequence[str], descriptions: Any,
                 attributes: str | Path | None) -> None:
    """Every unseen class must be a class of the data or of the descriptions / attribute
    table: an unknown name (a typo) is an error with the nearest names."""
    import difflib

    known = set(data_classes)
    if attributes is not None:
        known |= set(read_attributes(attributes).classes)
    elif descriptions is not None:
        known |= set(read_descriptions(descriptions))
    unknown = [u for u in unseen if u not in known]
    if not unknown:
        return
    hints = []
    for u in unknown:
        close = difflib.get_close_matches(u, sorted(known), n=2, cutoff=0.6)
        hints.append(f"{u!r}" + (f" (did you mean {' or '.join(map(repr, close))}?)"
                                 if close else ""))
    raise DataError(f"--unseen: unknown class {', '.join(hints)}; an unseen class must be a "
                    f"class of the data or of --classes / --attributes (known: "
                    f"{', '.join(sorted(known)[:12])}{', ...' if len(known) > 12 else ''})")


def _calibration(method: str, x: np.ndarray, y: np.ndarray, vectors: np.ndarray,
                 seen: list[int], seed: int, say: Callable[[str], None]) -> float:
    """The seen-class offset maximising H when a seeded third of the seen classes play
    unseen (their images only for validation) and 20% of the others' images are held out."""
    rng = np.random.default_rng(mix(seed, "calibration"))
    if len(seen) < 3:
        say("calibration: fewer than 3 seen classes, no offset")
        return 0.0
    fake = sorted(rng.choice(seen, max(1, len(seen) // 3), replace=False).tolist())
    real = [c for c in seen if c not in fake]
    fit_idx, val_idx = [], list(np.flatnonzero(np.isin(y, fake)))
    for c in real:
        idx = rng.permutation(np.flatnonzero(y == c))
        k = max(1, len(idx) // 5)
        val_idx += idx[:k].tolist()
        fit_idx += idx[k:].tolist()
    local = {c: i for i, c in enumerate(real)}
    m = METHODS[method]().fit(x[fit_idx], np.array([local[int(c)] for c in y[fit_idx]]),
                              vectors[real])
    cls = real + fake
    remap = {c: i for i, c in enumerate(cls)}
    yv = np.array([remap[int(c)] for c in y[val_idx]])
    s = m.scores(x[val_idx], vectors[cls])
    gamma = choose_gamma(s, yv, list(range(len(real))), list(range(len(real), len(cls))))
    say(f"calibration: seen-class offset {gamma:.3f}, chosen on validation ({len(fake)} seen "
        f"class(es) playing unseen)")
    return gamma


def _report(where: Path, test: Dataset, classes: list[str], pred: np.ndarray,
            metrics: dict[str, Any]) -> None:
    from transferkit.data.images import thumbnail_image
    from transferkit.evaluation import write_report
    from transferkit.evaluation.metrics import classification_metrics

    def row(name: str, m: dict[str, Any]) -> list[Any]:
        return [name, *(("n/a" if m[k] is None else f"{m[k]:.4f}")
                        for k in ("seen", "unseen", "H")), f"{m['gamma']:.3f}"]

    table = {"title": "Generalised zero-shot (per-class accuracy among all classes)",
             "columns": ["", "seen", "unseen", "H", "seen-class offset"],
             "rows": [row("uncalibrated", metrics["gzsl"]),
                      row("calibrated on validation", metrics["gzsl_calibrated"])],
             "note": "zero-shot accuracy of the unseen test images among the unseen classes "
                     f"only: {metrics['zsl_unseen_accuracy']}"}
    m = classification_metrics(test.labels, pred, None, classes)
    info = {k: metrics[k] for k in ("method", "class_vectors", "backbone", "seen", "unseen",
                                    "train_images", "test_images", "seed")}
    write_report(where, title=f"Zero-shot ({metrics['method']}) on "
                 f"{Path(str(test.source)).name}", metrics=m, y_true=test.labels,
                 y_pred=pred, proba=None, class_names=classes, items=test.items,
                 item_kind=test.modality,
                 load_item=thumbnail_image if test.modality == "image" else None,
                 info=info, tables=[table])


class _Clip:
    """CLIP's zero-shot scorer: cosine of image and class-text embeddings (scaled by 100,
    as CLIP's logit scale is)."""

    def scores(self, x: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        return np.asarray(x) @ np.asarray(vectors).T

    def head(self, vectors: np.ndarray, offsets: np.ndarray) -> Any:
        import torch

        from transferkit.heads import Head

        v = np.asarray(vectors, np.float64)
        head = Head({"kind": "projected", "in_dim": v.shape[1], "num_classes": len(v),
                     "embed_dim": v.shape[1], "normalize": True, "logit_scale": 100.0})
        head.projection.copy_(torch.eye(v.shape[1]))
        head.prototypes.copy_(torch.as_tensor(v, dtype=torch.float32))
        head.offsets.copy_(torch.as_tensor(100.0 * np.asarray(offsets), dtype=torch.float32))
        return head.eval()
