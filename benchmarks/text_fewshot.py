"""Few-shot text classification on WordNet glosses: transferkit vs the SetFit library.

Data: Debian ``wordnet-base`` noun synsets; each gloss (definition up to its first ';') is
labelled with its lexicographer class; 10 classes (animal, artifact, body, food, location,
person, plant, state, substance, time). k labelled glosses per class drawn with the seed; a
fixed balanced test set of 2,000 glosses (200 per class), disjoint from every draw.

Side by side, in one process, same MiniLM body (the bundled all-MiniLM-L6-v2):
- tk probe: frozen embeddings + logistic regression (C chosen by CV)
- tk contrastive: supervised contrastive fine-tuning (transferkit defaults) + logistic regr.
- tk LoRA: rank-8 adapters on query/value + linear head, cross-entropy (defaults)
- ``contrastive-random`` / ``lora-random`` (with ``--methods``): the same with random batches
  instead of the default length-grouped ones (the comparison for ``group_by_length``)
- SetFit 1.x: ``Trainer(model, TrainingArguments(seed=seed))``, its default recipe. At k=64 the
  default samples every unique pair (368,640 pairs, about 3 h per seed on 2 CPU cores), so
  there it runs with ``num_iterations`` (``--setfit-iterations-64``, named in the table).
- zero-shot (no labels): cosine similarity to the class names, and to the classes'
  descriptions from WordNet's lexnames manual page.

Time = wall seconds of fit + predicting the 2,000 test glosses (no feature cache for
transferkit, so both sides encode the test set). Needs: pip install setfit (the ``bench`` extra).

Run: .venv/bin/python benchmarks/text_fewshot.py [--shots 8 64] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from typing import Any

import numpy as np
import torch

from _common import machine, write_results
from transferkit.backbones import load_backbone
from transferkit.backbones.text import minilm_dir
from transferkit.data.samples import WORDNET_DESCRIPTIONS, wordnet_fewshot
from transferkit.strategies import (
    ContrastiveClassifier,
    LoRAClassifier,
    ProbeClassifier,
    ZeroShotClassifier,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def accuracy(pred: Any, test: Any) -> float:
    names = np.asarray(test.class_names)
    return float(np.mean(np.asarray(pred) == names[test.labels]))


def run_tk(method: str, train: Any, test: Any, seed: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    bb = load_backbone("minilm")
    base, _, variant = method.partition("-")
    kw: dict[str, Any] = {"group_by_length": False} if variant == "random" else {}
    if base == "probe":
        est = ProbeClassifier(backbone=bb, cache=False, seed=seed)
    elif base == "contrastive":
        est = ContrastiveClassifier(backbone=bb, cache=False, seed=seed, progress=False, **kw)
    elif base == "lora":
        est = LoRAClassifier(backbone=bb, cache=False, seed=seed, progress=False, **kw)
    else:
        raise SystemExit(f"unknown method {method!r}")
    est.fit(train)
    t1 = time.perf_counter()
    pred = est.predict(test)
    t2 = time.perf_counter()
    return {"accuracy": accuracy(pred, test), "fit_s": t1 - t0, "predict_s": t2 - t1,
            "wall_s": t2 - t0}


def run_setfit(train: Any, test: Any, seed: int, iterations: int | None) -> dict[str, Any]:
    from datasets import Dataset as HFDataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    t0 = time.perf_counter()
    model = SetFitModel.from_pretrained(str(minilm_dir()))
    out = {"output_dir": tempfile.mkdtemp(prefix="setfit-")}  # its checkpoints, not in the repo
    args = (TrainingArguments(seed=seed, **out) if iterations is None
            else TrainingArguments(seed=seed, num_iterations=iterations, **out))
    trainer = Trainer(model=model, args=args, train_dataset=HFDataset.from_dict(
        {"text": list(train.items), "label": train.labels.tolist()}))
    trainer.train()
    t1 = time.perf_counter()
    pred = model.predict(list(test.items), batch_size=64)
    t2 = time.perf_counter()
    shutil.rmtree(out["output_dir"], ignore_errors=True)
    names = np.asarray(test.class_names)
    return {"accuracy": accuracy(names[np.asarray(pred, dtype=int)], test),
            "fit_s": t1 - t0, "predict_s": t2 - t1, "wall_s": t2 - t0,
            "num_iterations": iterations}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, nargs="+", default=[8, 64])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--setfit-iterations-64", type=int, default=5,
                    help="SetFit num_iterations at k >= 64 (its default is all pairs)")
    ap.add_argument("--methods", nargs="+",
                    default=["probe", "contrastive", "lora", "setfit"])
    ap.add_argument("--name", default="text_fewshot")
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    rows: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    _, test = wordnet_fewshot(8, seed=0)
    zs: dict[str, float] = {}
    for label, kw in (("class names", {}),
                      ("lexnames descriptions", {"descriptions": {
                          c: WORDNET_DESCRIPTIONS[c] for c in test.class_names}})):
        t0 = time.perf_counter()
        z = ZeroShotClassifier(cache=False, **kw).fit(test)
        zs[label] = accuracy(z.predict(test), test)
        print(f"zero-shot from {label}: {zs[label]:.4f} ({time.perf_counter() - t0:.1f} s)",
              flush=True)
    for k in args.shots:
        for seed in args.seeds:
            train, test = wordnet_fewshot(k, seed=seed)
            for m in args.methods:
                if m == "setfit":
                    it = args.setfit_iterations_64 if k >= 64 else None
                    r = run_setfit(train, test, seed, it)
                    name = "SetFit default" if it is None else f"SetFit num_iterations={it}"
                else:
                    r = run_tk(m, train, test, seed)
                    name = f"tk {m}"
                r.update({"method": name, "k": k, "seed": seed})
                rows.append(r)
                print(f"k={k} seed={seed} {name}: acc {r['accuracy']:.4f}, "
                      f"{r['wall_s']:.1f} s", flush=True)
    table = []
    summary = []
    for k in args.shots:
        methods = list(dict.fromkeys(r["method"] for r in rows if r["k"] == k))
        for name in methods:
            rs = [r for r in rows if r["k"] == k and r["method"] == name]
            accs = [r["accuracy"] for r in rs]
            walls = [r["wall_s"] for r in rs]
            s = {"k": k, "method": name, "accuracy_mean": statistics.mean(accs),
                 "accuracy_sd": statistics.pstdev(accs), "wall_s_mean": statistics.mean(walls),
                 "per_seed": [round(a, 4) for a in accs]}
            summary.append(s)
            table.append([k, name, f"{s['accuracy_mean']:.4f} ± {s['accuracy_sd']:.4f}",
                          " / ".join(f"{a:.4f}" for a in accs), f"{s['wall_s_mean']:.1f}"])
    notes = ("Zero-shot (no labels, same 2,000 test glosses): " + "; ".join(
        f"{k} {v:.4f}" for k, v in zs.items()) + f". Total benchmark time "
        f"{(time.perf_counter() - t_start) / 60:.1f} min. Time = fit + predict 2,000 test "
        f"glosses, wall seconds, 2 threads.")
    write_results(args.name, {"machine": machine(), "rows": rows, "summary": summary,
                              "zero_shot": zs, "seeds": args.seeds, "shots": args.shots,
                              "setfit_iterations_64": args.setfit_iterations_64},
                  table, ["k/class", "method", "accuracy (mean ± sd)", "per seed",
                          "time (s, mean)"], notes)


if __name__ == "__main__":
    main()
