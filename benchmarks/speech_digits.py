"""Spoken digits: transfer across voices and languages with the speech-embedding encoder.

Data (built here, nothing shipped): synthetic digits by espeak-ng — each seed draws 2 of
10 English voice variants (``--voices``), at 2 speeds and 2 pitches (80 clips) — and the real
recordings of Debian's asterisk-core-sounds packages: one studio speaker per language, the
digits 0..9 (10 real clips per language: the counts stand beside every figure).

Tasks: (1) synthetic English voices -> the real English speaker; (2) English -> Spanish,
French and Italian with k synthetic examples per class of the new language (the seed's
cross-language case), tested on that language's real speaker; (3) synthetic -> real English
by domain adaptation (the 10 real clips as the unlabelled target, their labels only for the
score). Methods: probe on the pretrained embeddings, fine-tuning with the first 3 stages
frozen vs the last 3 frozen, the log-mel baseline (no transfer), the same encoder trained
from scratch.

Run: .venv/bin/python benchmarks/speech_digits.py [--seeds 0 1 2]
(needs Debian espeak-ng and asterisk-core-sounds-{en,es,fr,it}-wav)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import machine, write_results
from transferkit.data import Dataset
from transferkit.data.samples import real_digits, spoken_digits

VOICES = ["en-gb", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan",
          "en-us+f3", "en-gb+f2", "en-us+m3", "en-gb-x-rp+f4"]
OTHER = {"es": ["es", "es-419", "es+f3", "es-419+m3"],
         "fr": ["fr", "fr-be", "fr+f3", "fr-be+m3"],
         "it": ["it", "it+f3", "it+m3", "it+f2"]}
METHODS = {
    "probe (pretrained)": ("probe", "speech_embedding", {}),
    "fine-tune, first 3 stages frozen": ("finetune", "speech_embedding", {"freeze": 3}),
    "fine-tune, last 3 stages frozen": ("finetune", "speech_embedding", {"freeze": 0,
                                                                        "freeze_last": 3}),
    "log-mel statistics + logreg (no transfer)": ("probe", "logmel", {}),
    "same encoder from scratch": ("finetune", "speech_scratch", {}),
}
# --layers: the fine-tuned models themselves (no probe fallback), first vs last stages frozen
LAYERS = {
    "probe (pretrained)": METHODS["probe (pretrained)"],
    "fine-tuned, first 3 stages frozen (no probe fallback)":
        ("finetune", "speech_embedding", {"freeze": 3, "fallback": "none"}),
    "fine-tuned, last 3 stages frozen (no probe fallback)":
        ("finetune", "speech_embedding", {"freeze": 0, "freeze_last": 3, "fallback": "none"}),
}


def _fit(kind: str, backbone: str, opts: dict[str, Any], train: Dataset, seed: int) -> Any:
    from transferkit.strategies import FineTuneClassifier, ProbeClassifier

    if kind == "probe":
        return ProbeClassifier(backbone=backbone, seed=seed, cache=False).fit(train)
    return FineTuneClassifier(backbone=backbone, seed=seed, cache=False, progress=False,
                              **opts).fit(train)


def _acc(est: Any, test: Dataset) -> float:
    return float((est.predict_proba(test).argmax(1) == test.labels).mean())


def _merge(a: Dataset, b: Dataset) -> Dataset:
    return Dataset(items=[*a.items, *b.items], labels=np.r_[a.labels, b.labels],
                   class_names=a.class_names, modality="audio", source=f"{a.source} + "
                   f"{b.source}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--voices", type=int, default=2,
                    help="English voice variants drawn per seed (x 2 speeds x 2 pitches)")
    ap.add_argument("--layers", action="store_true",
                    help="only task 1 with the fine-tuned models kept (first vs last frozen)")
    ap.add_argument("--name", default=None, help="default: speech_digits[_layers]")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp())
    real_en = real_digits("en")
    real_other = {lang: real_digits(lang) for lang in OTHER}
    rows: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    for seed in args.seeds:
        rng = np.random.default_rng(seed)
        voices = sorted(rng.choice(VOICES, args.voices, replace=False).tolist())
        train = spoken_digits(root / f"en-{seed}", voices, speeds=(130, 170), pitches=(40, 60))
        for name, (kind, bb, opts) in (LAYERS if args.layers else METHODS).items():
            t0 = time.perf_counter()
            est = _fit(kind, bb, opts, train, seed)
            rows.append({"task": "synthetic en -> real en", "method": name, "seed": seed,
                         "train": len(train), "test": len(real_en),
                         "accuracy": _acc(est, real_en),
                         "seconds": time.perf_counter() - t0})
            print(rows[-1]["task"], name, seed, rows[-1]["accuracy"], flush=True)
            if args.layers:  # a larger test: the English voice variants not drawn
                unseen = spoken_digits(root / f"en-rest-{seed}",
                                       [v for v in VOICES if v not in voices],
                                       speeds=(130, 170), pitches=(40, 60))
                rows.append({"task": "synthetic en -> unseen synthetic voices",
                             "method": name, "seed": seed, "train": len(train),
                             "test": len(unseen), "accuracy": _acc(est, unseen),
                             "seconds": rows[-1]["seconds"]})
                print(rows[-1]["task"], name, seed, rows[-1]["accuracy"], flush=True)
        if args.layers:
            continue
        for lang, lang_voices in OTHER.items():
            lang_all = spoken_digits(root / lang, lang_voices, language=lang,
                                     speeds=(130, 170), pitches=(40, 60))
            real = real_other[lang]
            for k in args.shots:
                pick = np.concatenate([rng.choice(np.flatnonzero(lang_all.labels == c), k,
                                                  replace=False) for c in range(10)])
                few = lang_all.subset(pick, source=f"{k} synthetic {lang} per class")
                for name, data in ((f"probe on English + {k}/class target language",
                                    _merge(train, few)),
                                   (f"probe on {k}/class target language alone", few),
                                   ("probe on English alone", train)):
                    t0 = time.perf_counter()
                    est = _fit("probe", "speech_embedding", {}, data, seed)
                    rows.append({"task": f"en -> {lang} ({k}/class)", "method": name,
                                 "seed": seed, "train": len(data), "test": len(real),
                                 "accuracy": _acc(est, real),
                                 "seconds": time.perf_counter() - t0})
                    print(rows[-1]["task"], name, seed, rows[-1]["accuracy"], flush=True)
        from transferkit.strategies import DomainAdaptClassifier

        for method in ("source-only", "coral", "reweight"):
            t0 = time.perf_counter()
            est = DomainAdaptClassifier(backbone="speech_embedding", method=method,
                                        freeze="all", seed=seed, cache=False).fit(
                train, X_target=real_en)
            rows.append({"task": "adapt synthetic -> real en (frozen features)",
                         "method": method, "seed": seed, "train": len(train),
                         "test": len(real_en), "accuracy": _acc(est, real_en),
                         "seconds": time.perf_counter() - t0})
            print(rows[-1]["task"], method, seed, rows[-1]["accuracy"], flush=True)
    table = []
    for task in dict.fromkeys(r["task"] for r in rows):
        for method in dict.fromkeys(r["method"] for r in rows if r["task"] == task):
            rs = [r for r in rows if r["task"] == task and r["method"] == method]
            accs = [r["accuracy"] for r in rs]
            table.append([task, method, len(rs), rs[0]["train"], rs[0]["test"],
                          f"{statistics.mean(accs):.3f} ± {statistics.pstdev(accs):.3f}",
                          " / ".join(f"{a:.1f}" for a in accs),
                          f"{statistics.mean(r['seconds'] for r in rs):.1f}"])
    notes = (f"Seeds {args.seeds} (each draws {args.voices} of {len(VOICES)} English voice "
             f"variants). The real test sets are one speaker's 10 digits per language: "
             f"every clip is 10 points of accuracy. Time = fit + predict, 2 CPU threads. Total "
             f"{(time.perf_counter() - t_start) / 60:.1f} min.")
    name = args.name or ("speech_digits_layers" if args.layers else "speech_digits")
    write_results(name, {"machine": machine(), "rows": rows}, table,
                  ["task", "method", "seeds", "train clips", "real test clips",
                   "accuracy (mean ± sd)", "per seed", "time (s)"], notes)


if __name__ == "__main__":
    main()
