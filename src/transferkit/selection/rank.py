"""Ranking candidate backbones (and their intermediate stages) on a labelled dataset without
training: each candidate's features (from the cache) are scored by the transferability
scores; with ``verify`` the linear probe's accuracy on a held-out split is measured beside, so
the ranking can be checked against what training reaches."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from transferkit.backbones import Backbone, load_backbone
from transferkit.data.dataset import Dataset, stratified_split
from transferkit.errors import DataError
from transferkit.selection.scores import FEATURE_SCORES, SOURCE_SCORES


def _outputs(bb: Backbone, ds: Dataset, fn: Callable[[torch.Tensor], torch.Tensor],
             batch_size: int) -> np.ndarray:
    """``fn`` (a part of ``bb.model``) on every prepared item of ``ds``, on the backbone's
    device and precision, as float32 numpy rows."""
    from transferkit.backbones.base import autocast_engine
    from transferkit.backbones.pipeline import prepared_batches
    from transferkit.device import default_workers, precision_name, resolve_device

    device = resolve_device(bb.device)
    bb.model.to(device)
    run = autocast_engine(fn, device, precision_name(device, bb.precision))
    pipe = Backbone.pipeline(bb, device)  # the backbone's own preprocessing
    items = [bb.normalize_item(it) for it in ds.items]
    batches = [list(range(s, min(s + batch_size, len(items))))
               for s in range(0, len(items), batch_size)]
    out = []
    with torch.inference_mode():
        for prep in prepared_batches(pipe, items, list(ds.origins), batches,
                                     workers=default_workers(device),
                                     pin=device.type == "cuda"):
            if prep.bad:
                raise DataError(next(iter(prep.bad.values())))
            out.append(run(pipe.to_input(prep.batch, device)).cpu().numpy())
    return np.concatenate(out)


def stage_features(bb: Backbone, ds: Dataset, n_stages: int, batch_size: int = 32
                   ) -> np.ndarray:
    """Globally average-pooled output of the first ``n_stages`` stages of ``bb``."""
    seq = bb.sequential_stages()
    if seq is None:
        raise ValueError(f"backbone {bb.name!r} cannot be cut at its stages")
    prefix = torch.nn.Sequential(*seq[:n_stages]).eval()

    def pooled(x: torch.Tensor) -> torch.Tensor:
        y = prefix(x)
        return y.mean(dim=(2, 3)) if y.dim() == 4 else y

    return _outputs(bb, ds, pooled, batch_size)


def _source_probs(name: str | Backbone, ds: Dataset, batch_size: int = 32
                  ) -> np.ndarray | None:
    """The candidate's own source classifier's probabilities (an ImageNet head), if any."""
    if isinstance(name, Backbone):
        return None
    try:
        bb = load_backbone(name, keep_head=True)
    except Exception:
        return None
    if bb.modality != "image" or not getattr(bb.model, "num_classes", 0):
        return None
    bb.model.eval()
    return _outputs(bb, ds, lambda x: torch.softmax(bb.model(x).float(), dim=1), batch_size)


def check_stages(bb: Backbone, stages: Sequence[int]) -> None:
    """Each stage cut must lie inside ``bb``'s stages (a ValueError naming --stages)."""
    if not stages:
        return
    seq = bb.sequential_stages()
    if seq is None:
        raise ValueError(f"--stages: backbone {bb.name!r} cannot be cut at its stages")
    bad = [k for k in stages if not 1 <= int(k) < len(seq)]
    if bad:
        raise ValueError(f"--stages {','.join(map(str, stages))}: backbone {bb.name!r} has "
                         f"{len(seq) - 1} stages; a cut keeps the first 1 to {len(seq) - 1} "
                         f"(got {', '.join(map(str, bad))})")


def rank_backbones(data: Dataset, candidates: Sequence[str | Backbone], *,
                   scores: Sequence[str] = ("logme", "hscore", "transrate"),
                   stages: Sequence[int] = (), verify: bool = False, source: bool = False,
                   seed: int = 0, cache: Any = True,
                   log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """One row per candidate (and per requested stage cut): its scores, the seconds scoring
    took (features included), and with ``verify`` the probe's held-out accuracy. Rows are
    sorted by the first score, best first. ``source`` adds LEEP and NCE from candidates
    that carry a source classifier."""
    say = log or (lambda _m: None)
    unknown = [s for s in scores if s not in FEATURE_SCORES]
    if unknown:
        raise ValueError(f"unknown score(s) {unknown}; choose from {', '.join(FEATURE_SCORES)}")
    if data.labels is None:
        raise ValueError(f"{data.source}: ranking needs labelled data")
    fit_part, held = stratified_split(data, 0.25, seed, what="verification") if verify \
        else (data, None)
    built = [(cand, load_backbone(cand) if not isinstance(cand, Backbone) else cand)
             for cand in candidates]
    for _, bb in built:  # every cut checked before any features are extracted
        check_stages(bb, stages)
    rows: list[dict[str, Any]] = []
    for cand, bb in built:
        views: list[tuple[str, Callable[[Dataset], np.ndarray]]] = [
            (bb.name, lambda ds, bb=bb: bb.extract(ds, cache=cache).features)]
        for k in stages:
            views.append((f"{bb.name} (first {k} stages)",
                          lambda ds, bb=bb, k=k: stage_features(bb, ds, k)))
        for label, feats_of in views:
            t0 = time.perf_counter()
            f = feats_of(fit_part)
            row: dict[str, Any] = {"candidate": label, "dims": int(f.shape[1])}
            for s in scores:
                row[s] = float(FEATURE_SCORES[s](f, fit_part.labels))
            if source and label == bb.name:
                probs = _source_probs(cand, fit_part)
                for s, fn in SOURCE_SCORES.items():
                    row[s] = None if probs is None else float(fn(probs, fit_part.labels))
            row["seconds"] = round(time.perf_counter() - t0, 3)
            if held is not None:
                row["probe_accuracy"] = _probe_accuracy(f, fit_part, feats_of(held), held, seed)
            say(f"{label}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items()
                                         if isinstance(v, float)))
            rows.append(row)
    return sorted(rows, key=lambda r: -r[scores[0]])


def _probe_accuracy(f: np.ndarray, fit_part: Dataset, fh: np.ndarray, held: Dataset,
                    seed: int) -> float:
    from transferkit.heads import fit_head

    head = fit_head(f, fit_part.labels, len(fit_part.class_names), "logreg", C=1.0, seed=seed)
    with torch.inference_mode():
        pred = head(torch.as_tensor(fh, dtype=torch.float32)).argmax(1).numpy()
    return float((pred == held.labels).mean())
