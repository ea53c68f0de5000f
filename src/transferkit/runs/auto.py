"""`transferkit auto`: choose the backbone and the strategy for a dataset, explain why, run
the choice and the runner-up on the same split, keep the better on validation data.

1. The backbone: every installed candidate of the data's modality is scored with LogME on
   the training split (features from the cache; no training), best first.
2. The strategies: from the number of labelled items per class and the time budget (each
   plan's time is estimated from throughputs measured on 2 CPU cores): images — the linear
   probe, or the fine-tuning recipe when there are enough images per class and time; text —
   the probe, SetFit-style contrastive training for few labels, the fine-tuning recipe for
   more.
3. The first two plans run on one seeded split (test held out, validation carved from the
   training data); the one with the better validation accuracy is kept. The test set only
   reports. ``auto.json`` records every input of the decision, so it can be reproduced.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from transferkit._io import write_json_atomic
from transferkit.backbones.modality import check_modality
from transferkit.backbones.registry import REGISTRY
from transferkit.data import load_data
from transferkit.data.dataset import Dataset, Splits, stratified_split
from transferkit.errors import DataError
from transferkit.runs.rundir import preflight, run_directory

#: items per second on 2 CPU cores: images from benchmarks/results/extract_throughput.md
#: (44.5) and finetune_speed.md (91.3 with the lower stages frozen); texts from the text
#: benchmark (2,000 glosses embedded in 3.1 s; contrastive ~100 texts/s, kept lower here);
#: audio from the speech tests (~30 clips/s through the encoder)
SPEED = {"extract-image": 45.0, "finetune-image": 90.0, "extract-text": 600.0,
         "finetune-text": 60.0, "contrastive-text": 60.0, "extract-audio": 30.0,
         "finetune-audio": 30.0}
FINETUNE_MIN_PER_CLASS = {"image": 20, "text": 32, "audio": 20}  # below: the probe wins
CONTRASTIVE_MAX_PER_CLASS = 32


@dataclass
class AutoResult:
    """The decision record, and the run directories of the plans that ran."""

    record: dict[str, Any]
    out: Path
    seconds: float

    @property
    def chosen_run(self) -> Path:
        """The kept plan's run directory."""
        return self.out / "runs" / self.record["kept"]


def candidates_for(modality: str) -> list[str]:
    """The installed registry backbones that carry transfer for ``modality``."""
    skip = {"pixels", "cnn", "lenet", "bow", "logmel", "speech_scratch"}
    return [n for n, e in REGISTRY.items() if e.modality == modality and n not in skip
            and e.available_offline()]


def plans_for(modality: str, per_class: int, n_train: int, budget_s: float
              ) -> list[dict[str, Any]]:
    """Strategies worth running, most promising first, each with its estimated seconds and
    the reason it is on the list."""
    ext = n_train / SPEED[f"extract-{modality}"]
    plans = [{"strategy": "probe", "options": {}, "estimate_s": ext,
              "why": "a frozen backbone and a linear head: fast, and hard to beat with few "
                     "labels"}]
    ft_time = ext + n_train * 15 / SPEED[f"finetune-{modality}"]
    if per_class >= FINETUNE_MIN_PER_CLASS[modality]:
        plans.insert(0, {"strategy": "finetune", "options": {}, "estimate_s": ft_time,
                         "why": f"{per_class} labelled items per class: the measured "
                                f"fine-tuning recipe beat the probe at this size"})
    if modality == "text" and per_class <= CONTRASTIVE_MAX_PER_CLASS:
        plans.insert(0, {"strategy": "contrastive", "options": {},
                         "estimate_s": ext + n_train * 10 / SPEED["contrastive-text"],
                         "why": f"{per_class} labelled texts per class: SetFit-style "
                                f"contrastive training was best with few labels"})
    fits = [p for p in plans if p["estimate_s"] <= budget_s]
    dropped = [p for p in plans if p["estimate_s"] > budget_s]
    for p in dropped:
        p["why"] += f" — but its estimated {p['estimate_s']:.0f} s exceeds the budget"
    return fits + dropped if fits else plans[-1:] + dropped


def auto_run(data: str | Path | Dataset, out: str | Path, *, budget_minutes: float = 10.0,
             test: str | Path | Dataset | None = None, test_fraction: float = 0.25,
             seed: int = 0, candidates: Sequence[str] | None = None, cache: Any = True,
             log: Callable[[str], None] | None = None, progress: Any = None,
             overwrite: bool = False, text_column: str | None = None) -> AutoResult:
    """Choose, explain, run the choice and the runner-up, keep the better on validation."""
    say = log or (lambda _m: None)
    t0 = time.perf_counter()
    preflight(out, overwrite=overwrite, what="auto run", inputs=[data, test])
    train, val, test_ds = _three_sets(data, test, test_fraction, seed, text_column)
    counts = np.bincount(train.labels, minlength=len(train.class_names))
    per_class = int(np.median(counts[counts > 0]))
    cands = list(candidates) if candidates else candidates_for(train.modality)
    if not cands:
        raise DataError(f"no installed pretrained backbone for {train.modality} data")
    for name in cands:
        check_modality(name, train.modality, train.source, option="--backbones")
    scored = [_score(name, train, cache, progress, say) for name in cands]
    scored.sort(key=lambda r: -r["logme"])
    backbone = scored[0]["backbone"]
    plans = plans_for(train.modality, per_class, len(train), budget_minutes * 60)
    explanation = (f"{len(train)} training {train.noun} in {len(train.class_names)} classes "
                   f"(median {per_class} per class), budget {budget_minutes:g} min. Backbone "
                   f"{backbone}: the highest LogME of {len(scored)} candidate(s) (a score of "
                   f"how well its features fit the labels, computed without training). "
                   f"Strategy {plans[0]['strategy']}: {plans[0]['why']}." +
                   (f" Runner-up: {plans[1]['strategy']} ({plans[1]['why']})."
                    if len(plans) > 1 else ""))
    say(f"auto: {explanation}")
    record: dict[str, Any] = {"data": train.source, "modality": train.modality,
                              "seed": seed, "budget_minutes": budget_minutes,
                              "train": len(train), "validation": len(val),
                              "test": len(test_ds), "per_class_median": per_class,
                              "backbones": scored, "backbone": backbone, "plans": plans,
                              "explanation": explanation}
    splits = Splits(train=train, val=val, test=test_ds.align_classes(train.class_names))
    out = Path(out)
    with run_directory(out, overwrite=overwrite, what="auto run",
                       inputs=[data, test]) as where:
        results = _run_plans(where, splits, plans, backbone, budget_minutes * 60, record,
                             seed=seed, cache=cache, log=log, progress=progress)
        kept = max(results, key=lambda k: -1.0 if results[k]["val_accuracy"] is None
                   else results[k]["val_accuracy"])
        record.update(results=results, kept=kept,
                      decided_on="validation accuracy (the test set only reports)",
                      seconds=round(time.perf_counter() - t0, 2))
        other = [k for k in results if k != kept]
        say(f"auto: kept {kept} (validation {results[kept]['val_accuracy']})" +
            (f"; the runner-up {other[0]} scored {results[other[0]]['val_accuracy']}"
             if other else ""))
        write_json_atomic(where / "auto.json", record)
    return AutoResult(json.loads((out / "auto.json").read_text()), out,
                      time.perf_counter() - t0)


def _three_sets(data: Any, test: Any, test_fraction: float, seed: int,
                text_column: str | None) -> tuple[Dataset, Dataset, Dataset]:
    """(train, validation, test): the test set given or split off, then 20% of the rest
    held out for validation."""
    ds = data if isinstance(data, (Dataset, Splits)) else load_data(
        data, labelled=True, text_column=text_column)
    if isinstance(ds, Splits):
        test = test or ds.test
        ds = ds.train
    test_ds = test if isinstance(test, Dataset) or test is None else load_data(
        test, labelled=True, text_column=text_column)
    if test_ds is None:
        ds, test_ds = stratified_split(ds, test_fraction, seed, what="test")
    train, val = stratified_split(ds, 0.2, seed + 1, what="validation")
    return train, val, test_ds


def _score(name: str, train: Dataset, cache: Any, progress: Any,
           say: Callable[[str], None]) -> dict[str, Any]:
    """A candidate backbone's LogME on the training data, with its time."""
    from transferkit.backbones import load_backbone
    from transferkit.selection.scores import logme

    ts = time.perf_counter()
    f = load_backbone(name).extract(train, cache=cache, progress=progress).features
    row = {"backbone": name, "logme": logme(f, train.labels),
           "seconds": round(time.perf_counter() - ts, 2)}
    say(f"auto: {name}: LogME {row['logme']:.4f}")
    return row


def _run_plans(where: Path, splits: Splits, plans: list[dict[str, Any]], backbone: str,
               budget_s: float, record: dict[str, Any], *, seed: int, cache: Any,
               log: Callable[[str], None] | None, progress: Any) -> dict[str, Any]:
    """Run the chosen plan and the runner-up if it fits the budget; their figures."""
    from transferkit.runs.fit import FitRequest, fit_into

    say = log or (lambda _m: None)
    results: dict[str, Any] = {}
    spent = 0.0
    for i, plan in enumerate(plans[:2]):  # the choice, and the runner-up if it fits
        name = plan["strategy"]
        if i and spent + plan["estimate_s"] > budget_s:
            say(f"auto: the runner-up {name} would take about {plan['estimate_s']:.0f} s, "
                f"over the budget: not run")
            record["runner_up_not_run"] = name
            break
        spent += plan["estimate_s"]
        say(f"auto: running {name} on {backbone}")
        tp = time.perf_counter()
        req = FitRequest(splits, strategy=name, backbone=backbone, seed=seed, cache=cache,
                         options=plan["options"])
        run = fit_into(where / "runs" / name, req, log=log, progress=progress)
        results[name] = {"val_accuracy": run.val_score,
                         "seconds": round(time.perf_counter() - tp, 2),
                         "test_accuracy": run.evaluation.metrics["accuracy"]
                         if run.evaluation is not None else None}
    return results
