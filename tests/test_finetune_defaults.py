"""`--strategy finetune` out of the box: the measured recipe, and honest epoch selection on
held-out training data when no validation set is given."""

from __future__ import annotations

import numpy as np
import pytest

from transferkit.data import Splits, from_texts
from transferkit.data.dataset import holdout_split
from transferkit.strategies import FineTuneClassifier, ProbeClassifier


def test_holdout_is_stratified_disjoint_and_spares_small_classes() -> None:
    labels = ["a"] * 40 + ["b"] * 20 + ["c"] * 3
    ds = from_texts([f"text {i}" for i in range(len(labels))], labels)
    rest, held, note = holdout_split(ds, 0.2, seed=0)
    assert held is not None
    assert not set(rest.origins) & set(held.origins)  # never both
    assert sorted(rest.origins + held.origins) == sorted(ds.origins)
    assert held.class_counts() == {"a": 8, "b": 4, "c": 0}  # 3 < 5: c stays in training
    assert "12 of 63 training text(s) held out" in note and "fewer than 5" in note
    again, _, _ = holdout_split(ds, 0.2, seed=0)
    assert again.origins == rest.origins
    tiny = from_texts(["x", "y", "z", "w"], ["a", "b", "a", "b"])
    same, none, why = holdout_split(tiny, 0.2, seed=0)
    assert none is None and same is tiny and "too few text(s)" in why


def test_without_validation_the_kept_epoch_is_the_best_held_out_one(demo_splits: Splits,
                                                                    tmp_path) -> None:
    lines: list[str] = []
    est = FineTuneClassifier(backbone="cnn", image_size=24, epochs=8, lr=0.02,
                             optimizer="sgd", schedule="constant", seed=0, cache=False,
                             log=lines.append).fit(demo_splits.train)
    assert any(ln.startswith("validation: 60 of 300 training image(s) held out") for ln in lines)
    assert any(ln.startswith("fine-tuning recipe 'scratch'") for ln in lines)
    vals = [r["val_accuracy"] for r in est.history_]
    assert len(vals) == 8 and est.best_epoch_ == 1 + int(np.argmax(vals))
    assert est.best_epoch_ != 8 or vals[-1] == max(vals)
    assert est.val_score_ == max(vals)
    # the restored weights are those of the kept epoch: they score its accuracy again
    held = [i for i, o in enumerate(demo_splits.train.origins)
            if o not in set(est.train_origins_)]
    assert len(held) == 60
    again = float((est.predict_proba(demo_splits.train.subset(held)).argmax(1)
                   == demo_splits.train.labels[held]).mean())
    assert again == pytest.approx(max(vals), abs=1e-9)


def test_default_finetune_is_at_least_the_probe(demo_splits: Splits) -> None:
    """The bundled sample (300 training images, 10 classes): the default recipe does not lose
    to the default probe (beyond a small margin), and far beats chance."""
    probe = ProbeClassifier(seed=0).fit(demo_splits.train)
    ft = FineTuneClassifier(seed=0).fit(demo_splits.train)
    test = demo_splits.test
    p_acc = float((probe.predict_proba(test).argmax(1) == test.labels).mean())
    f_acc = float((ft.predict_proba(test).argmax(1) == test.labels).mean())
    assert "fine-tuning recipe 'pretrained-image'" in ft.recipe_
    # the fallback to the probe did not fire: the model judged is the fine-tuned one, which
    # beat the probe on the held-out data (measured 0.900 vs 0.833; test 0.820 vs 0.797)
    assert "fallback" not in ft.model_.info and ft.model_.info["strategy"] == "finetune"
    assert ft.model_.info["trainable_params"] > 0
    assert ft.val_score_ > ft.probe_val_score_, (ft.val_score_, ft.probe_val_score_)
    assert "the fine-tuned model is kept" in ft.advice_
    assert f_acc >= p_acc - 0.02, (f_acc, p_acc)
    assert f_acc > 0.7


def test_fine_tuning_that_loses_to_the_probe_falls_back_to_it(demo_splits: Splits) -> None:
    """A learning rate that wrecks the backbone: the held-out data prefers the linear probe,
    so the model is the probe refitted on all the training data (the same predictions as
    ``--strategy probe``), and ``advice_`` says so; ``fallback='none'`` keeps the wreck."""
    from transferkit.backbones import load_backbone

    lines: list[str] = []
    common = {"freeze": 6, "head_epochs": 0, "epochs": 1, "lr": 5.0, "image_size": 64,
              "optimizer": "sgd", "seed": 0, "cache": False}
    ft = FineTuneClassifier(**common, log=lines.append).fit(demo_splits.train)
    assert ft.model_.info["fallback"] == "probe"
    assert ft.val_score_ == ft.probe_val_score_ > 0.5
    assert "the model is the probe, fitted on 300 training image(s)" in ft.advice_
    assert any("the model is the probe" in ln for ln in lines)
    probe = ProbeClassifier(backbone=load_backbone("efficientnet_lite0").with_image_size(64),
                            seed=0, cache=False).fit(demo_splits.train)
    test = demo_splits.test
    np.testing.assert_allclose(ft.predict_proba(test), probe.predict_proba(test), atol=1e-5)
    wreck = FineTuneClassifier(**common, fallback="none").fit(demo_splits.train)
    assert "fallback" not in wreck.model_.info
    assert wreck.val_score_ < ft.val_score_


def test_lora_without_validation_trains_on_all_the_data(tiny_text_dir) -> None:
    """LoRA's recipe keeps its last step, so by default it holds nothing out (as
    ``LoRAClassifier`` does); other fine-tuning holds out 20%; an explicit holdout wins."""
    from transferkit.backbones import load_backbone

    words = ["red", "green", "blue"]
    texts = [f"the {w} thing number {i}" for w in words for i in range(20)]
    data = from_texts(texts, [w for w in words for _ in range(20)])
    bb = load_backbone(tiny_text_dir)
    common = {"backbone": bb, "epochs": 1, "batch_size": 20, "cache": False,
              "progress": False, "seed": 0}
    lora = FineTuneClassifier(lora_r=2, **common).fit(data)
    assert lora.holdout_note_ is None and len(lora.train_origins_) == 60
    held = FineTuneClassifier(lora_r=2, holdout=0.2, **common).fit(data)
    assert len(held.train_origins_) == 48 and "12 of 60" in held.holdout_note_
    plain = FineTuneClassifier(head_epochs=0, **common).fit(data)
    assert "12 of 60" in plain.holdout_note_  # (the model kept may be refitted on all)
