"""Few-shot on real images (the bundled Fashion-MNIST sample, 60 per class): methods beat
chance by far on the pretrained backbone and fall with random weights; episodic and
meta-training on base classes; the command writes metrics and a report; protonet deploys."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from transferkit.backbones import load_backbone
from transferkit.cli import app
from transferkit.data import Dataset, from_folder
from transferkit.fewshot import run_episodes
from transferkit.runs.fewshot import fewshot_run
from transferkit.strategies import ProtoNetClassifier

SIZE = 64
NOVEL = ["sandal", "shirt", "sneaker", "bag", "ankle_boot"]


def _classes(ds: Dataset, names: list[str]) -> Dataset:
    keep = [i for i, lab in enumerate(ds.labels) if ds.class_names[lab] in names]
    sub = ds.subset(keep)
    return Dataset(items=sub.items, labels=[names.index(sub.class_names[lab])
                                            for lab in sub.labels],
                   class_names=names, source=f"fashion sample ({', '.join(names)})")


@pytest.fixture(scope="module")
def split(sample_dir: Path) -> tuple[Dataset, Dataset]:
    ds = from_folder(sample_dir)
    base = [c for c in ds.class_names if c not in NOVEL]
    return _classes(ds, base), _classes(ds, NOVEL)


@pytest.fixture(scope="module")
def small_lite0():
    return load_backbone("efficientnet_lite0").with_image_size(SIZE)


def test_pretrained_features_beat_chance_and_random_weights(split, small_lite0) -> None:
    _, novel = split
    feats = small_lite0.extract(novel).features
    random_bb = load_backbone("efficientnet_lite0").with_image_size(SIZE)
    with torch.no_grad():
        torch.manual_seed(0)
        for m in random_bb.model.modules():
            if hasattr(m, "reset_parameters") and m is not random_bb.model:
                m.reset_parameters()
    random_bb.invalidate()
    noise = random_bb.extract(novel, cache=False).features
    for method in ("protonet", "probe"):
        good = run_episodes(feats, novel.labels, method=method, shots=1, episodes=200, seed=0)
        bad = run_episodes(noise, novel.labels, method=method, shots=1, episodes=200, seed=0)
        assert good.mean > 0.55, (method, good.mean)  # chance: 0.2
        assert good.mean > bad.mean + 0.1, (method, good.mean, bad.mean)


def test_command_evaluates_methods_and_writes_the_report(split, small_lite0,
                                                         tmp_path: Path) -> None:
    base, novel = split
    res = fewshot_run(novel, tmp_path / "fs", backbone=small_lite0,
                      methods="protonet,finetune,protonet-trained,metasgd", base=base,
                      shots=5, queries=10, episodes=40, finetune_episodes=10, epochs=1,
                      seed=0)
    # 5-way 5-shot, chance 0.2. Features of the same network with random weights reach 0.63
    # (protonet) on these episodes, so the pretrained methods must clear 0.75 (measured
    # protonet 0.803, finetune 0.850). One epoch of base-class training (protonet-trained,
    # metasgd) measured 0.632 / 0.630: no better than random features yet, so those two are
    # held to 0.55 only; shuffled labels put every method at 0.19-0.21.
    floor = {"prototypes": 0.75, "support-finetune": 0.75, "protonet-trained": 0.55,
             "metasgd": 0.55}
    for name, r in res.results.items():
        assert r.mean > floor[name], (name, r.mean)
        assert len(r.accuracies) == (10 if name == "support-finetune" else 40)
    metrics = json.loads((tmp_path / "fs" / "metrics.json").read_text())
    # the earlier names (protonet, finetune) are understood and reported by today's names
    assert set(metrics["methods"]) == {"prototypes", "support-finetune", "protonet-trained",
                                       "metasgd"}
    assert len(metrics["methods"]["prototypes"]["episode_accuracies"]) == 40
    html = (tmp_path / "fs" / "report.html").read_text()
    assert "Accuracy per episode" in html and "Methods on the same episodes" in html


def test_cli_refuses_bad_episodes_by_name(split, sample_dir: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["fewshot", str(sample_dir), "--out", str(tmp_path / "a"),
                                   "--ways", "11"])
    assert res.exit_code == 2 and "needs 11 classes" in res.output, res.output
    res = CliRunner().invoke(app, ["fewshot", str(sample_dir), "--out", str(tmp_path / "b"),
                                   "--method", "maml"])
    assert res.exit_code == 2 and "--base" in res.output, res.output
    res = CliRunner().invoke(app, ["fewshot", str(sample_dir), "--out", str(tmp_path / "c"),
                                   "--shots", "50", "--queries", "15"])
    assert res.exit_code == 2 and "at least 65 items" in res.output, res.output


def test_protonet_strategy_deploys_a_prototype_model(split, small_lite0,
                                                     tmp_path: Path) -> None:
    from transferkit.model import TransferModel

    base, _ = split
    idx = np.arange(len(base))
    test = base.subset(idx[idx % 4 == 0])
    train = base.subset(idx[idx % 4 != 0])
    est = ProtoNetClassifier(backbone=small_lite0, ways=3, shots=2, queries=5, episodes=20,
                             epochs=1, seed=0, cache=False).fit(train)
    acc = float((est.predict_proba(test).argmax(1) == test.labels).mean())
    assert acc > 0.6, acc  # 5 base classes: chance 0.2
    est.model_.save(tmp_path / "pn")
    back = TransferModel.load(tmp_path / "pn")
    assert back.head.config["kind"] == "cosine"
    np.testing.assert_allclose(back.predict_proba(test.items[:10], cache=False),
                               est.predict_proba(test.subset(np.arange(10))), atol=1e-5)
