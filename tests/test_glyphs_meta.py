"""Meta-learning with task diversity: the glyph set rendered from the Noto fonts (base and novel
scripts disjoint, bad input named), the learned LSTM optimiser's meta-gradient against finite
differences, and meta-training on glyphs beating untrained features on novel scripts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from transferkit.data import glyphs
from transferkit.fewshot import run_episodes
from transferkit.fewshot.learned_opt import LSTMOptimizerMAML
from transferkit.fewshot.scratch import build_learner, episode_method, meta_train, random_features
from transferkit.train import StepContext

CTX = StepContext(epoch=0, epochs=1, step=0, steps_per_epoch=1, global_step=0, total_steps=1)
BASE = ("armenian", "hebrew", "thai", "tamil")
NOVEL = ("georgian", "cherokee")


@pytest.fixture(scope="module")
def small() -> tuple[glyphs.GlyphSet, glyphs.GlyphSet]:
    base = glyphs.build(BASE, per_class=10, max_chars=12, seed=0, ways=5)
    novel = glyphs.build(NOVEL, per_class=10, max_chars=10, seed=1, ways=5)
    return base, novel


def test_missing_fonts_name_the_debian_package(tmp_path: Path, capsys) -> None:
    code = glyphs.main([str(tmp_path / "out"), "--font-dir", str(tmp_path / "no-fonts")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and "fonts-noto-core" in err
    assert not (tmp_path / "out").exists()


def test_a_script_with_fewer_characters_than_ways_is_named() -> None:
    with pytest.raises(ValueError, match=r"script 'hebrew' has 27 characters.*--ways 30"):
        glyphs.build(["armenian", "hebrew"], per_class=1, max_chars=None, ways=30)
    with pytest.raises(ValueError, match="unknown script 'klingon'"):
        glyphs.build(["klingon"], per_class=1)


def test_novel_classes_never_appear_in_training(small) -> None:
    base, novel = small
    assert len(base.class_names) == 48 and len(novel.class_names) == 20
    assert not set(base.scripts) & set(novel.scripts)
    assert not set(base.class_names) & set(novel.class_names)
    base_chars = {n.split("-")[-1] for n in base.class_names}
    assert not base_chars & {n.split("-")[-1] for n in novel.class_names}
    seen = {img.tobytes() for img in base.images}
    assert not any(img.tobytes() in seen for img in novel.images)
    # every class has its drawings, ink on black, and more than one font behind them
    assert np.bincount(base.labels).tolist() == [10] * 48
    assert base.images.shape[1:] == (28, 28) and base.images.max() == 255
    assert all(len(f) >= 2 for f in base.fonts.values())


def test_lstm_optimizer_meta_gradient_matches_finite_differences() -> None:
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    learner = LSTMOptimizerMAML(net, inner_steps=2, inner_lr=0.3, hidden=4, seed=0).double()
    torch.nn.init.normal_(learner.optimizer_net.out.weight, std=0.5)  # the LSTM path matters
    g = torch.Generator().manual_seed(0)
    batch = {"support": (torch.randn(6, 3, generator=g, dtype=torch.float64),
                         torch.tensor([0, 1, 0, 1, 0, 1])),
             "query": (torch.randn(8, 3, generator=g, dtype=torch.float64),
                       torch.tensor([0, 1, 1, 0, 0, 1, 1, 0]))}
    params = [learner.optimizer_net.cell.weight_ih, learner.optimizer_net.out.weight,
              net.weight]
    grads = torch.autograd.grad(learner.training_step(batch, CTX)["loss"], params)
    for p, gp in zip(params, grads, strict=True):
        for idx in [(0, 0), (p.shape[0] - 1, p.shape[1] - 1), (p.shape[0] // 2, 1)]:
            eps, old = 1e-6, p.data[idx].item()
            p.data[idx] = old + eps  # .data: no autograd record of the nudge itself
            hi = learner.training_step(batch, CTX)["loss"].item()
            p.data[idx] = old - eps
            lo = learner.training_step(batch, CTX)["loss"].item()
            p.data[idx] = old
            assert abs((hi - lo) / (2 * eps) - gp[idx].item()) < 1e-6
    assert grads[0].abs().sum() > 0  # the LSTM's own weights receive a meta-gradient


def test_meta_training_beats_untrained_features_on_novel_scripts(small) -> None:
    base, novel = small
    rand = run_episodes(random_features(novel.images, width=16), novel.labels,
                        method="protonet", ways=5, shots=1, queries=5, episodes=100, seed=0)
    acc = {}
    for m in ("protonet-trained", "maml"):
        learner = build_learner(m, ways=5, shots=1, width=16, seed=0)
        torch.manual_seed(0)
        meta_train(learner, (base.images, base.labels), None, ways=5, shots=1, queries=5,
                   episodes=150, epochs=1, seed=0)
        x, method = episode_method(learner, novel.images)
        acc[m] = run_episodes(x, novel.labels, method=method, ways=5, shots=1, queries=5,
                              episodes=100, seed=0).mean
    untrained = build_learner("maml", ways=5, shots=1, width=16, seed=0)
    x, method = episode_method(untrained, novel.images)
    acc["maml-untrained"] = run_episodes(x, novel.labels, method=method, ways=5, shots=1,
                                         queries=5, episodes=100, seed=0).mean
    print(rand.mean, acc)
    assert acc["protonet-trained"] > rand.mean + 0.15
    assert acc["maml"] > max(rand.mean, acc["maml-untrained"]) + 0.05


def test_fewshot_command_runs_the_lstm_optimizer(small, tmp_path: Path) -> None:
    from transferkit.backbones.cnn import ScratchCNN
    from transferkit.data import from_arrays
    from transferkit.runs.fewshot import fewshot_run

    _, novel = small
    base = glyphs.build(BASE[:2], per_class=20, max_chars=6, seed=2)  # 15 queries per class

    def ds(g: glyphs.GlyphSet) -> object:
        return from_arrays(list(g.images), [g.class_names[y] for y in g.labels],
                           class_names=g.class_names, source="glyphs")

    res = fewshot_run(ds(novel), tmp_path / "fs", backbone=ScratchCNN(32, widths=(8, 16)),
                      methods="lstm-optimizer,protonet", base=ds(base), shots=1, queries=5,
                      episodes=40, epochs=1, seed=0, cache=False)
    r = res.results["lstm-optimizer"]  # the wiring; what it learns: the benchmark and above
    assert len(r.accuracies) == 40 and np.isfinite(r.accuracies).all()
    assert r.prepare_seconds > 0 and "lstm-optimizer" in res.metrics["methods"]
    assert (tmp_path / "fs" / "report.html").is_file()
