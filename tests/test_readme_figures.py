"""Every figure the README publishes in a benchmark table matches its results JSON.

Each check rebuilds a README table's numbers from ``benchmarks/results/*.json`` at the
README's precision and compares them row by row; a README edited away from its results
file (or a results file re-run without the README) fails here. The demo table is printed
by ``make demo`` and has no results file; it is not checked.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = (ROOT / "README.md").read_text()
NUM = re.compile(r"[−+-]?\d+\.\d+|[−+-]?\d+")


def _nums(text: str) -> list[float]:
    return [float(m.replace("−", "-")) for m in NUM.findall(text.replace(",", ""))]


def table(header: str) -> dict[str, list[str]]:
    """The README table whose header row starts with ``header``: first cell -> cells."""
    lines = README.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows: dict[str, list[str]] = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows.setdefault(cells[0], cells[1:])
    return rows


def _load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def _same(readme_cell: str, expected: str, where: str) -> None:
    assert _nums(readme_cell) == pytest.approx(_nums(expected), abs=1e-9), \
        f"README {where}: {readme_cell!r}, results file gives {expected!r}"


FT_TASKS = {"scikit-image faces": "faces", "scikit-learn digits (8×8)": "digits",
            "Fashion-MNIST 20/class": "fmnist20", "Fashion-MNIST 50/class": "fmnist50",
            "Fashion-MNIST 100/class": "fmnist100", "WordNet glosses 8/class (text)": "wordnet8",
            "WordNet glosses 64/class (text)": "wordnet64"}


def test_finetune_defaults_table() -> None:
    rows = table("| task (train draw) | probe | finetune default |")
    summ = {(s["task"], s["method"]): s for s in _load("finetune_defaults_rerun")["summary"]}
    assert set(rows) == set(FT_TASKS)
    for label, task in FT_TASKS.items():
        ft = summ[(task, "default")]  # the recipe: images refit on all data, text does not
        probe = summ[(task, "probe")]
        word = rows[label][3].split()[0]  # "fine-tuned N/3" or "probe N/3"
        expected = [f"{probe['test_mean']:.3f}", f"{ft['test_mean']:.3f}",
                    f"{100 * ft['vs_probe']:+.1f}", f"{ft['kept'].get(word, 0)}/3"]
        for cell, exp in zip(rows[label], expected, strict=True):
            _same(cell, exp, label)


def test_text_fewshot_table() -> None:
    rows = table("| labels/class | tk probe | tk LoRA |")
    summ = {(s["k"], s["method"]): s for s in _load("text_fewshot")["summary"]}
    # LoRA re-run alone with its default without validation data (no holdout)
    summ.update({(s["k"], s["method"]): s for s in _load("text_fewshot_lora")["summary"]})
    for k in (8, 64):
        cells = rows[str(k)]
        for cell, method in zip(cells[:3], ("tk probe", "tk lora", "tk contrastive"),
                                strict=True):
            s = summ[(k, method)]
            _same(cell, f"{s['accuracy_mean']:.3f}, {s['wall_s_mean']:.1f}", f"{k} {method}")
        setfit = next(s for (kk, m), s in summ.items() if kk == k and m.startswith("SetFit"))
        got = _nums(cells[3])[:2]
        assert got == pytest.approx([round(setfit["accuracy_mean"], 3),
                                     round(setfit["wall_s_mean"], 1)]), f"{k} SetFit"


ADAPT = {"source-only": "source-only", "DANN": "dann", "Deep CORAL": "coral",
         "MMD (multi-kernel)": "mmd", "CMD": "cmd", "self-training": "self-train",
         "DANN + self-training": "dann+self-train", "reweighting": "reweight",
         "skada 0.6 DeepCoral (same network and data, last epoch)": "skada deepcoral",
         "skada 0.6 DANN (its default domain classifier)": "skada dann",
         "skada DANN with a sigmoid domain output": "skada dann-sigmoid",
         "a plain PyTorch DANN loop (constant lr)": "plain PyTorch DANN loop"}


def test_adapt_digits_table() -> None:
    rows = table("| method | target accuracy | vs source-only | source-val choice | IM choice |")
    acc: dict[str, list[float]] = defaultdict(list)
    for r in _load("adapt_digits")["rows"]:
        if r.get("labeled") in (0, None):
            acc[r["method"]].append(r["target_accuracy"])
    base = np.asarray(acc["source-only"])
    for label, method in ADAPT.items():
        a = np.asarray(acc[method])
        _same(rows[label][0].replace("*", ""), f"{a.mean():.3f} ± {a.std():.3f}", label)
        if method != "source-only":
            gain = _nums(rows[label][1].replace("*", ""))[0]
            assert gain == pytest.approx(round(100 * (a.mean() - base.mean()), 1)), label


FEWSHOT = {"prototypes, cosine": "transferkit prototypes",
           "prototypes, squared Euclidean": "transferkit prototypes-euclidean",
           "logistic regression on the support (Tian et al.)": "transferkit support-probe",
           "fine-tuning on each support (100 episodes)": "transferkit support-finetune",
           "ProtoNet trained on base classes 0..4": "transferkit protonet-trained",
           "easyfsl PrototypicalNetworks, same features":
               "easyfsl PrototypicalNetworks (same cached features)",
           "plain torch.func MAML loop, same features":
               "plain torch.func MAML loop (same features, 2,000 episodes)"}


def test_fewshot_table() -> None:
    rows = table("| method | 1-shot | 5-shot | time for the episodes |")
    res = {(r["shots"], r["method"]): r for r in _load("fewshot_fashion")["rows"]}
    for label, method in FEWSHOT.items():
        for col, shots in ((0, 1), (1, 5)):
            r = res[(shots, method)]
            _same(rows[label][col].replace("*", ""),
                  f"{100 * r['accuracy']:.1f} ± {100 * r['ci95']:.1f}", f"{label} {shots}")
    meta = rows["MAML / first-order / Meta-SGD (base classes)"]
    for col, shots in ((0, 1), (1, 5)):
        _same(meta[col], " / ".join(f"{100 * res[(shots, f'transferkit {m}')]['accuracy']:.1f}"
                                    for m in ("maml", "fomaml", "metasgd")), f"MAML {shots}")


GLYPHS = {"frozen ImageNet prototypes (EfficientNet-Lite0, 128 px)":
          "frozen ImageNet prototypes (Lite0, 128 px)",
          "logistic regression on the support, same features":
          "probe on the support (same features)",
          "untrained Conv-4, prototypes": "untrained Conv-4 prototypes",
          "ProtoNet meta-trained on the base scripts": "protonet-trained",
          "**ProtoNet, 5 epochs x 300 episodes**": "protonet-trained, 5 epochs",
          "MAML (1 inner step, lr 0.4)": "maml", "first-order MAML": "fomaml",
          "Meta-SGD": "metasgd",
          "learned LSTM optimiser (coordinate-wise, Andrychowicz et al.)": "lstm-optimizer"}


def test_glyphs_table() -> None:
    rows = table("| method | 5-way 1-shot, mean ± std across seeds |")
    res = {(r["shots"], r["method"]): r for r in _load("fewshot_glyphs_seeds")["rows"]}
    for label, method in GLYPHS.items():
        one = res[(1, method)]
        want = f"{100 * one['mean']:.1f}" + ("" if one["std"] is None else
                                             f" ± {100 * one['std']:.1f}")
        _same(rows[label][0].replace("*", ""), f"{want} {one['seeds']}", f"{label} 1-shot")
        five = res.get((5, method))
        if five is None:
            assert rows[label][1] == "not run", label
        else:
            want = f"{100 * five['mean']:.1f}" + ("" if five["std"] is None else
                                                  f" ± {100 * five['std']:.1f}")
            _same(rows[label][1].replace("*", ""), f"{want} {five['seeds']}",
                  f"{label} 5-shot")


def test_multitask_glyphs_table() -> None:
    rows = table("| data-poor drawings/class / network |")
    rich = ("armenian", "thai", "tamil", "ethiopic")
    res = _load("multitask_glyphs_sweep")["rows"]

    def gap(rs: list[dict], task: str, key: str) -> float:
        return float(np.mean([100 * (r[key] - r["single"]) for r in rs if r["task"] == task]))

    for label, cells in rows.items():
        k, width = label.split(" / ")
        rs = [r for r in res if r["poor_size"] == int(k) and r["width"] == width]
        want = [f"{gap(rs, 'georgian', 'joint'):+.1f}"]
        for key in ("joint", "guarded"):
            want.append(f"{min(gap(rs, t, key) for t in rich):+.1f}")
        want += [f"{gap(rs, 'georgian', 'finetuned'):+.1f}",
                 f"{min(gap(rs, t, 'finetuned') for t in rich):+.1f}",
                 str(len({r['seed'] for r in rs}))]
        for cell, expected in zip(cells, want, strict=True):
            _same(cell.replace("*", ""), expected, f"multitask glyphs {label}")


def _speech(name: str) -> dict[tuple[str, str], float]:
    acc: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in _load(name)["rows"]:
        acc[(r["task"], r["method"])].append(r["accuracy"])
    return {k: float(np.mean(v)) for k, v in acc.items()}


def test_speech_sentences() -> None:
    s = _speech("speech_digits")
    text = " ".join(README.split())

    def three(n: int, method: str) -> str:
        return " / ".join(f"{s[(f'en -> {lang} ({n}/class)', method.format(n=n))]:.2f}"
                          for lang in ("es", "fr", "it"))
    both = three(5, "probe on English + {n}/class target language")
    alone5 = three(5, "probe on {n}/class target language alone")
    alone1 = three(1, "probe on {n}/class target language alone")
    both1 = three(1, "probe on English + {n}/class target language")
    english = three(5, "probe on English alone")
    assert f"{both} (English alone: {english})" in text
    assert f"did nearly as well or better: {alone5}" in text
    assert f"{alone1} alone against {both1} with English added" in text
    layers = _speech("speech_digits_layers")
    real, voices = "synthetic en -> real en", "synthetic en -> unseen synthetic voices"
    first = "fine-tuned, first 3 stages frozen (no probe fallback)"
    last = "fine-tuned, last 3 stages frozen (no probe fallback)"
    assert (f"first 3 stages frozen {layers[(real, first)]:.3f} on the real speaker and "
            f"{layers[(voices, first)]:.3f}") in text
    assert f"last 3 frozen {layers[(real, last)]:.3f} / {layers[(voices, last)]:.3f}" in text
    # what the seeds claim and we did not measure: freezing the last layers did worse
    assert layers[(real, last)] < layers[(real, first)]
    assert layers[(voices, last)] < layers[(voices, first)]


def test_case_study_icons_table() -> None:
    rows = table("| icons row | val accuracy | test top-1 | test top-5 |")
    res = _load("case_icons_split0")["rows"]
    assert len(rows) >= 6
    for label, cells in rows.items():
        r = res[label.replace("**", "")]
        expected = [f"{r['val_accuracy']:.3f}", f"{r['accuracy']:.3f}", f"{r['top5']:.3f}"]
        for cell, exp in zip(cells[:3], expected, strict=True):
            _same(cell.replace("*", ""), exp, f"icons {label}")


def test_case_study_icons_splits_table() -> None:
    rows = table("| icons row, 3 splits | test top-1 | test top-5 | macro F1 |")
    stats = _load("case_icons_splits")["stats"]
    assert len(rows) == len(stats) >= 6
    for label, cells in rows.items():
        v = stats[label]
        expected = [f"{np.mean(v[k]):.3f} ± {np.std(v[k]):.3f}"
                    for k in ("accuracy", "top5", "macro_f1")]
        for cell, exp in zip(cells[:3], expected, strict=True):
            _same(cell, exp, f"icons splits {label}")


def test_case_study_clipart_table() -> None:
    from importlib import import_module

    rows = table("| clip-art rung | seed 004 (val) | val accuracy | test accuracy |")
    agg = _load("case_clipart")["rungs"]
    seed_val = import_module("transferkit.runs.compare").SEED_VAL_ACCURACY
    assert len(rows) == 6
    for label, cells in rows.items():
        label = label.replace("**", "")
        a = agg[label]

        def ms(key: str, a: dict = a) -> str:
            d = a[key]
            return f"{d['mean']:.3f} ± {d['std']:.3f}" if d["n"] > 1 else f"{d['mean']:.3f}"
        expected = [f"{seed_val[label]:.2f}", ms("val_accuracy"), ms("accuracy"),
                    ms("macro_f1")]
        for cell, exp in zip(cells[:4], expected, strict=True):
            _same(cell.replace("*", ""), exp, f"clip art {label}")


def test_case_study_icons_adapt_table() -> None:
    """A row is its method's own epoch choice ('default' where that was run, else the
    source-val run), or the run named by a trailing ``select=...``; its gain is over the
    source-only model trained beside it where the run recorded one."""
    rows = table("| icons adapt row | target accuracy | vs source-only (points) |")
    res = _load("case_icons_adapt")["rows"]
    paths = {"frozen": "features", "top-stage": "network"}
    assert len(rows) >= 8

    def find(pair: str, path: str, method: str, selects: tuple[str, ...]) -> dict:
        return next(x for s in selects for x in res if (
            x["pair"], x["path"], x["method"], x["select"]) == (pair, paths[path], method, s))

    for label, cells in rows.items():
        pair, path, method, *select = label.replace("**", "").split(" ")
        r = find(pair, path, method, tuple(x.removeprefix("select=") for x in select)
                 or ("default", "source-val"))
        base = r.get("baseline_target") or find(pair, path, "source-only",
                                                ("source-val",))["target_accuracy"]
        gain = 100 * (r["target_accuracy"] - base)
        expected = [f"{r['target_accuracy']:.3f}", "" if method == "source-only"
                    else f"{gain:+.1f}"]
        for cell, exp in zip(cells[:2], expected, strict=True):
            _same(cell.replace("*", ""), exp, f"icons adapt {label}")


def test_multitask_sharing_table() -> None:
    rows = table("| sharing (4 blocks, 5 drawings) | Georgian joint |")
    rich = ("armenian", "thai", "tamil", "ethiopic")
    files = {"hard (`multitask_glyphs_guard.md`)": ("multitask_glyphs_guard", "hard"),
             "shared-private": ("multitask_glyphs_sharing", "shared-private"),
             "soft (cross-stitch)": ("multitask_glyphs_sharing", "soft")}
    assert set(rows) == set(files)
    for label, cells in rows.items():
        name, sharing = files[label]
        rs = [r for r in _load(name)["rows"] if r.get("sharing", "hard") == sharing]

        def gap(task: str, key: str, rs: list = rs) -> float:
            return float(np.mean([100 * (r[key] - r["single"]) for r in rs
                                  if r["task"] == task]))

        want = [f"{gap('georgian', 'joint'):+.1f}", f"{gap('georgian', 'guarded'):+.1f}",
                f"{min(gap(t, 'joint') for t in rich):+.1f}",
                f"{min(gap(t, 'guarded') for t in rich):+.1f}"]
        for cell, expected in zip(cells, want, strict=True):
            _same(cell.replace("−", "-"), expected, f"multitask sharing {label}")
