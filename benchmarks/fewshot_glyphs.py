"""Meta-learning with task diversity: glyphs of 14 base scripts (Noto fonts, Debian
fonts-noto-core; one class per character, 20 jittered drawings over the script's 4 fonts)
meta-train a Conv-4 (32 channels, 28 px grey, GroupNorm) with trained ProtoNet, MAML,
first-order MAML, Meta-SGD and a coordinate-wise LSTM optimiser; evaluated on 600 seeded
5-way episodes of 6 novel scripts never seen in training, beside frozen ImageNet prototypes
(EfficientNet-Lite0), a logistic-regression probe on the support of the same features, and
the untrained Conv-4's prototypes. Validation (the epoch) reads 15% of the base classes,
held out of training; the novel scripts are read only by the final evaluation.

Run: .venv/bin/python benchmarks/fewshot_glyphs.py [--shots 1 5] [--epochs 4]
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np
import torch

from _common import add_load_option, machine, write_results
from transferkit.data import from_arrays
from transferkit.data.glyphs import BASE_SCRIPTS, NOVEL_SCRIPTS, build
from transferkit.fewshot import run_episodes
from transferkit.fewshot.scratch import (
    SCRATCH_METHODS,
    build_learner,
    episode_method,
    meta_train,
    random_features,
)


def _split_classes(labels: np.ndarray, fraction: float, seed: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    classes = np.unique(labels)
    held = np.random.default_rng(seed).choice(classes, int(len(classes) * fraction),
                                              replace=False)
    return np.flatnonzero(~np.isin(labels, held)), np.flatnonzero(np.isin(labels, held))


def _relabel(labels: np.ndarray) -> np.ndarray:
    return np.unique(labels, return_inverse=True)[1]


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--methods", nargs="+", default=list(SCRATCH_METHODS))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--episodes", type=int, default=600, help="evaluation episodes")
    ap.add_argument("--train-episodes", type=int, default=300, help="per epoch")
    ap.add_argument("--seed", type=int, default=0)
    add_load_option(ap)
    ap.add_argument("--name", default="fewshot_glyphs")
    ap.add_argument("--tag", default="", help="appended to the meta-trained rows' names "
                    "(e.g. ', 5 epochs': rows of another budget stay apart when aggregated)")
    ap.add_argument("--skip-baselines", action="store_true",
                    help="only the meta-trained methods (their seed's baselines are elsewhere)")
    return ap.parse_args()


def main() -> None:
    args = _args()
    t_start = time.perf_counter()
    base = build(BASE_SCRIPTS, per_class=20, seed=args.seed, ways=5)
    novel = build(NOVEL_SCRIPTS, per_class=20, seed=args.seed + 1, ways=5)
    tr, va = _split_classes(base.labels, 0.15, args.seed)
    train = (base.images[tr], _relabel(base.labels[tr]))
    val = (base.images[va], _relabel(base.labels[va]))
    print(f"base {len(base.class_names)} classes ({len(np.unique(train[1]))} train, "
          f"{len(np.unique(val[1]))} validation); novel {len(novel.class_names)}", flush=True)
    from transferkit.backbones import load_backbone

    if not args.skip_baselines:
        bb = load_backbone("efficientnet_lite0").with_image_size(128)
        ds = from_arrays(list(novel.images), [novel.class_names[y] for y in novel.labels],
                         class_names=novel.class_names, source="novel glyphs")
        t0 = time.perf_counter()
        imagenet = bb.extract(ds, cache=False).features
        extract_s = time.perf_counter() - t0
    rand = random_features(novel.images, seed=args.seed)
    rows: list[dict[str, Any]] = []

    def evaluate(name: str, x: np.ndarray, method: Any, shots: int, train_s: float,
                 extra: dict[str, Any] | None = None) -> None:
        r = run_episodes(x, novel.labels, method=method, ways=5, shots=shots, queries=15,
                         episodes=args.episodes, seed=args.seed)
        rows.append({"method": name, "shots": shots, "accuracy": r.mean, "ci95": r.ci95,
                     "train_seconds": round(train_s, 1), "episode_seconds": round(r.seconds, 1),
                     **(extra or {})})
        print(rows[-1], flush=True)
        write()

    def write() -> None:
        table = [[r["method"], f"{r['shots']}-shot", f"{100 * r['accuracy']:.1f} ± "
                  f"{100 * r['ci95']:.1f}", r["train_seconds"] or "", r["episode_seconds"]]
                 for r in rows]
        fonts = {s: len(f) for s, f in {**base.fonts, **novel.fonts}.items()}
        notes = (f"5-way, 15 queries per class, {args.episodes} seeded episodes per row (95% "
                 f"intervals). Base: {len(base.class_names)} characters of {len(BASE_SCRIPTS)} "
                 f"scripts ({', '.join(BASE_SCRIPTS)}), {len(np.unique(train[1]))} meta-train "
                 f"and {len(np.unique(val[1]))} validation classes; novel: "
                 f"{len(novel.class_names)} characters of {', '.join(NOVEL_SCRIPTS)} (never in "
                 f"training). Fonts per class: {fonts}; 20 drawings per class (one per font "
                 f"in a random order, fonts reused when a script has fewer; each drawing with "
                 f"its own random affine jitter), 28 px. Conv-4: 32 "
                 f"channels, GroupNorm, from scratch; meta-training {args.epochs} epochs x "
                 f"{args.train_episodes} episodes, Adam lr 1e-3; MAML family: 1 inner step at "
                 f"lr 0.4 (train and test); ProtoNet trains on 20-way episodes. Times: wall "
                 f"seconds ({torch.get_num_threads()} torch thread(s) on "
                 f"{os.cpu_count()} cores; {args.load}). Total "
                 f"{(time.perf_counter() - t_start) / 60:.1f} min.")
        write_results(args.name, {"machine": machine(), "rows": rows, "fonts": fonts,
                                  "base_classes": base.class_names,
                                  "novel_classes": novel.class_names}, table,
                      ["method", "setting", "accuracy (%)", "meta-training (s)", "episodes (s)"],
                      notes)

    for shots in args.shots:
        if not args.skip_baselines:
            evaluate("frozen ImageNet prototypes (Lite0, 128 px)", imagenet, "protonet",
                     shots, 0.0, {"extract_seconds": round(extract_s, 1)})
            evaluate("probe on the support (same features)", imagenet, "probe", shots, 0.0)
            evaluate("untrained Conv-4 prototypes", rand, "protonet", shots, 0.0)
        for m in args.methods:
            learner = build_learner(m, ways=5, shots=shots, seed=args.seed)
            torch.manual_seed(args.seed)
            t0 = time.perf_counter()
            hist = meta_train(learner, train, val, ways=5, shots=shots,
                              episodes=args.train_episodes, epochs=args.epochs,
                              seed=args.seed)["history"]
            train_s = time.perf_counter() - t0
            x, method = episode_method(learner, novel.images)
            evaluate(m + args.tag, x, method, shots, train_s,
                     {"val_accuracy": [h.get("val_accuracy") for h in hist]})


if __name__ == "__main__":
    main()
