"""WiSE-FT: the fine-tuned weights mixed with the ones fine-tuning started from, the mixing
weight fixed or picked on the validation data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from transferkit.backbones import load_backbone
from transferkit.data import Splits
from transferkit.strategies import FineTuneClassifier
from transferkit.strategies.finetune_net import new_head
from transferkit.strategies.wise import ALPHAS, choose_alpha, mix, parse_wise, snapshot

SIZE = 64


def test_mix_interpolates_floats_and_keeps_counters() -> None:
    start = {"w": torch.zeros(3), "n": torch.tensor(1)}
    end = {"w": torch.tensor([2.0, 4.0, 6.0]), "n": torch.tensor(7)}
    assert torch.equal(mix(start, end, 1.0)["w"], end["w"])
    assert torch.equal(mix(start, end, 0.0)["w"], start["w"])
    half = mix(start, end, 0.5)
    assert torch.allclose(half["w"], torch.tensor([1.0, 2.0, 3.0])) and int(half["n"]) == 7


def test_choose_alpha_keeps_the_best_mix_and_breaks_ties_by_loss() -> None:
    net = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(1.0)
    start = snapshot(net)
    with torch.no_grad():
        net.weight.fill_(5.0)  # the "fine-tuned" weight; mixes: 2, 3, 4, 5

    def evaluate() -> dict[str, float]:  # best accuracy at weight 3 and 4; loss breaks it
        w = float(net.weight.detach())
        return {"val_accuracy": 1.0 if w in (3.0, 4.0) else 0.5, "val_loss": abs(w - 3.9)}

    alpha, rows = choose_alpha(net, start, evaluate)
    assert alpha == 0.75 and float(net.weight.detach()) == pytest.approx(4.0)
    assert [r["alpha"] for r in rows] == sorted(ALPHAS)
    # equal scores everywhere: the smallest mix (closest to the start) is kept
    alpha, _ = choose_alpha(net, start, lambda: {"val_accuracy": 0.5, "val_loss": 1.0})
    assert alpha == 0.25


def test_bad_wise_values_name_the_option(demo_splits: Splits) -> None:
    assert parse_wise("0.5") == 0.5 and parse_wise("auto") == "auto" and parse_wise(None) is None
    for bad in (0, 1.5, "half", -0.1):
        with pytest.raises(ValueError, match="wise"):
            FineTuneClassifier(wise=bad).check_params()
    with pytest.raises(ValueError, match="wise='auto' picks the mixing weight on validation"):
        FineTuneClassifier(wise="auto", holdout=0, image_size=SIZE, freeze=6, epochs=1,
                           cache=False).fit(demo_splits.train)


def _fit(train, **kw) -> FineTuneClassifier:
    params = {"freeze": 6, "head_epochs": 0, "epochs": 1, "image_size": SIZE, "lr": 3e-3,
              "fallback": "none", "refit": False, "cache": False, "seed": 0, **kw}
    return FineTuneClassifier(**params).fit(train)


def test_a_fixed_weight_is_the_midpoint_of_start_and_fine_tuned(demo_splits: Splits) -> None:
    """No head phase: the start is the pretrained backbone and the seeded random head, so
    wise=0.5 gives exactly their mean with the fine-tuned weights of the same seeded run."""
    train = demo_splits.train.subset(np.arange(0, len(demo_splits.train), 3))
    plain = _fit(train, holdout=0)
    half = _fit(train, holdout=0, wise=0.5)
    pre = load_backbone("efficientnet_lite0").model.state_dict()
    tuned, mixed = plain.backbone_.model.state_dict(), half.backbone_.model.state_dict()
    names = [n for s in half.backbone_.stages()[6:] for n in s.param_names]
    assert names and all(not torch.equal(tuned[n], pre[n]) for n in names)  # it trained
    for n in names:
        assert torch.allclose(mixed[n], (pre[n] + tuned[n]) / 2, atol=1e-6), n
    for n in half.backbone_.stages()[0].param_names:  # frozen: untouched
        assert torch.equal(mixed[n], pre[n])
    start_head = new_head(half.backbone_.feature_dim, len(half.classes_), 0)
    assert torch.allclose(half.model_.head.body.weight,
                          (start_head.weight + plain.model_.head.body.weight) / 2, atol=1e-6)
    assert half.wise_alpha_ == 0.5 and half.model_.info["wise"] == 0.5
    assert plain.wise_alpha_ is None and "WiSE" not in plain.recipe_ and "WiSE" in half.recipe_


def test_auto_keeps_the_mix_that_scores_best_on_the_held_out_data(demo_splits: Splits) -> None:
    lines: list[str] = []
    est = _fit(demo_splits.train, epochs=2, wise="auto", log=lines.append)
    rows = est.wise_scores_
    assert [r["alpha"] for r in rows] == sorted(ALPHAS) and est.wise_alpha_ in ALPHAS
    best = max(r["val_accuracy"] for r in rows)
    assert est.val_score_ == best
    # alpha 1 is the kept epoch as trained: it scores what the Trainer recorded for it
    kept = next(r for r in est.history_ if r.get("kept"))
    assert rows[-1]["val_accuracy"] == pytest.approx(kept["val_accuracy"], abs=1e-9)
    # the weights kept are the chosen mix: they score its accuracy on the held-out data again
    held = [i for i, o in enumerate(demo_splits.train.origins)
            if o not in set(est.train_origins_)]
    again = float((est.predict_proba(demo_splits.train.subset(held)).argmax(1)
                   == demo_splits.train.labels[held]).mean())
    assert again == pytest.approx(best, abs=1e-9)
    assert any(ln.startswith(f"WiSE-FT: kept {est.wise_alpha_:g}") for ln in lines)


def test_refit_mixes_with_the_weight_the_held_out_run_picked(demo_splits: Splits) -> None:
    train = demo_splits.train.subset(np.arange(0, len(demo_splits.train), 2))
    lines: list[str] = []
    est = _fit(train, epochs=2, wise="auto", log=lines.append, refit=True)
    assert est.best_epoch_  # a fine-tuned epoch won (seed 0), so the refit ran
    picked = [ln for ln in lines if ln.startswith("WiSE-FT: kept")]
    assert len(picked) == 2 and "validation accuracy by weight" in picked[0]
    assert picked[1] == f"WiSE-FT: kept {est.wise_alpha_:g} of the fine-tuned weights"
    assert est.model_.info["wise"] == est.wise_alpha_
    assert any(r["phase"].startswith("refit") for r in est.history_)
