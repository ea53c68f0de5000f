"""Few-shot on Fashion-MNIST: novel classes 5..9 (sandal, shirt, sneaker, bag, ankle boot),
100 test-split images per class at 224 px, 600 seeded 5-way episodes with 15 queries per
class, 1-shot and 5-shot, on EfficientNet-Lite0.

Methods (transferkit): prototypes (cosine, squared Euclidean), the support logistic
regression of Tian et al., fine-tuning on each support (top stage + prototype-initialised
head; fewer episodes, it is slower), ProtoNet trained on base classes 0..4 (200 train-split
images each), MAML, first-order MAML and Meta-SGD meta-trained on the base classes' frozen
features. Beside them on the same episodes: easyfsl's PrototypicalNetworks (on the same
cached features, and with the backbone run per episode as its loop does, on fewer
episodes) and a plain hand-written torch.func MAML loop.

Run: .venv/bin/python benchmarks/fewshot_fashion.py [--episodes 600] [--shots 1 5]
(needs ``pip install easyfsl``; ``make bench-fewshot`` does it)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _common import FASHION_CLASSES, RESULTS, fashion_mnist_folder, machine, write_results
from transferkit.backbones import load_backbone
from transferkit.data import Dataset, from_folder
from transferkit.fewshot import run_episodes
from transferkit.runs.fewshot import fewshot_run


def _subset(ds: Dataset, names: list[str]) -> Dataset:
    keep = [i for i, lab in enumerate(ds.labels) if ds.class_names[lab] in names]
    sub = ds.subset(keep)
    return Dataset(items=sub.items, labels=[names.index(sub.class_names[lab])
                                            for lab in sub.labels], class_names=names,
                   source=sub.source)


def plain_maml(base_x: np.ndarray, base_y: np.ndarray, ways: int, shots: int, seed: int,
               steps: int = 2000) -> Any:
    """A hand-written torch.func MAML on the same features (the reference loop)."""
    from torch.func import functional_call, grad

    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(base_x.shape[1], 256), torch.nn.ReLU(),
                              torch.nn.Linear(256, ways))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(base_x)
    classes = np.unique(base_y)

    def loss_fn(params: dict, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(functional_call(net, params, (xs,)), ys)

    def adapt(params: dict, xs: torch.Tensor, ys: torch.Tensor) -> dict:
        for _ in range(5):
            g = grad(loss_fn)(params, xs, ys)
            params = {k: params[k] - 0.1 * g[k] for k in params}
        return params

    for _ in range(steps):
        cls = rng.choice(classes, ways, replace=False)
        s_idx, q_idx, s_lab, q_lab = [], [], [], []
        for j, c in enumerate(cls):
            pick = rng.choice(np.flatnonzero(base_y == c), shots + 15, replace=False)
            s_idx += pick[:shots].tolist()
            q_idx += pick[shots:].tolist()
            s_lab += [j] * shots
            q_lab += [j] * 15
        params = dict(net.named_parameters())
        fast = adapt(params, x[s_idx], torch.as_tensor(s_lab))
        loss = loss_fn(fast, x[q_idx], torch.as_tensor(q_lab))
        opt.zero_grad()
        loss.backward()
        opt.step()

    def method(s: np.ndarray, sl: np.ndarray, q: np.ndarray, n: int) -> np.ndarray:
        params = {k: v.detach() for k, v in net.named_parameters()}
        fast = adapt(params, torch.as_tensor(s), torch.as_tensor(sl))
        with torch.no_grad():
            return functional_call(net, fast, (torch.as_tensor(q),)).numpy()

    return method


def easyfsl_features(feats: np.ndarray) -> Any:
    from easyfsl.methods import PrototypicalNetworks

    model = PrototypicalNetworks(torch.nn.Identity())

    def method(s: np.ndarray, sl: np.ndarray, q: np.ndarray, n: int) -> np.ndarray:
        with torch.no_grad():
            model.process_support_set(torch.as_tensor(s), torch.as_tensor(sl))
            return model(torch.as_tensor(q)).numpy()

    return method


def easyfsl_images(bb: Any, items: list[Any]) -> Any:
    """easyfsl's loop as its users run it: the backbone on every episode's images."""
    from easyfsl.methods import PrototypicalNetworks

    net = bb.feature_module().eval()
    model = PrototypicalNetworks(net)
    images = [bb.prepare(it) for it in items]

    def method(s: np.ndarray, sl: np.ndarray, q: np.ndarray, n: int) -> np.ndarray:
        with torch.no_grad():
            model.process_support_set(torch.stack([images[int(i)] for i in s.ravel()]),
                                      torch.as_tensor(sl))
            return model(torch.stack([images[int(i)] for i in q.ravel()])).numpy()

    return method


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=600)
    ap.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--finetune-episodes", type=int, default=100)
    ap.add_argument("--easyfsl-image-episodes", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="fewshot_fashion")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp())
    novel_names, base_names = FASHION_CLASSES[5:], FASHION_CLASSES[:5]
    novel = _subset(from_folder(fashion_mnist_folder(root / "test", "test", 100, seed=1)),
                    novel_names)
    base = _subset(from_folder(fashion_mnist_folder(root / "train", "train", 200, seed=0)),
                   base_names)
    bb = load_backbone("efficientnet_lite0")
    t0 = time.perf_counter()
    feats = bb.extract(novel, cache=False).features  # timed: never from an earlier run
    extract_s = time.perf_counter() - t0
    base_feats = bb.extract(base).features
    rows: list[dict[str, Any]] = []
    for shots in args.shots:
        res = fewshot_run(novel, root / f"run{shots}", backbone=bb,
                          methods=["prototypes", "prototypes-euclidean", "support-probe",
                                   "support-finetune",
                                   "protonet-trained", "maml", "fomaml", "metasgd"],
                          base=base, shots=shots, episodes=args.episodes,
                          finetune_episodes=args.finetune_episodes, seed=args.seed,
                          log=print)
        for name, r in res.results.items():
            rows.append({**r.summary(), "shots": shots, "method": f"transferkit {name}"})
        peers = {"easyfsl PrototypicalNetworks (same cached features)":
                 (easyfsl_features(feats), feats, args.episodes),
                 "plain torch.func MAML loop (same features, 2,000 episodes)":
                 (plain_maml(base_feats, base.labels, 5, shots, args.seed), feats,
                  args.episodes),
                 "easyfsl PrototypicalNetworks (backbone run per episode)":
                 (easyfsl_images(bb, novel.items), np.arange(len(novel))[:, None],
                  args.easyfsl_image_episodes)}
        for name, (method, x, n_ep) in peers.items():
            r = run_episodes(x, novel.labels, method=method, ways=5, shots=shots, queries=15,
                             episodes=n_ep, seed=args.seed)
            rows.append({**r.summary(), "shots": shots, "method": name})
            print(f"{shots}-shot {name}: {r.mean:.4f} ± {r.ci95:.4f}, {r.seconds:.1f} s",
                  flush=True)
    table = [[f"{r['shots']}-shot", r["method"], f"{100 * r['accuracy']:.1f} ± "
              f"{100 * r['ci95']:.1f}", r["episodes"], f"{r['seconds']:.1f}",
              f"{r.get('prepare_seconds', 0):.1f}"] for r in rows]
    notes = (f"5-way, 15 queries per class, seed {args.seed}. Accuracy in % with the 95% "
             f"interval over the episodes. Episodes time = classifying the episodes; "
             f"preparation = what a method needs first (features from the cache, frozen-"
             f"prefix activations, training on the base classes). Extracting the 500 novel "
             f"images once took {extract_s:.1f} s. Reference figures measured here with a "
             f"plain script: prototypes (cosine) 74.3 ± 0.7 / 89.8 ± 0.3, logistic "
             f"regression 76.3 ± 0.7 / 90.6 ± 0.3.")
    write_results(args.name, {"machine": machine(), "rows": rows}, table,
                  ["setting", "method", "accuracy (%)", "episodes", "episodes time (s)",
                   "preparation (s)"], notes)
    (RESULTS / f"{args.name}.json").write_text(json.dumps({"machine": machine(),
                                                           "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
