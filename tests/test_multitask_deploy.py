"""Every sharing pattern saves one deployable model (a head per task, each reading its own
column of one feature vector): ``TransferModel.load`` + ``predict_all`` answer as the
in-memory model, and as the joint model scored in training (or, for a task the per-task guard
moved, as its single-task model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from transferkit.data.dataset import stratified_split
from transferkit.model import TransferModel
from transferkit.multitask.deploy import MultiTaskBackbone, deployable

CASES = {  # sharing, backbone, bn, options
    "soft": ("soft", "efficientnet_lite0", "frozen", {}),
    "shared-private": ("shared-private", "efficientnet_lite0", "task", {}),
    # the fine task reads no trained stage in the joint model: the guard keeps its
    # single-task model, so the one model mixes a single-task column and a joint one
    "hierarchical+guard": ("hierarchical", "efficientnet_lite0", "frozen",
                           {"branch": {"fine": 0}, "baselines": True}),
    "hard, per-task statistics (scratch)": ("hard", "cnn", "task",
                                            {"epochs": 10, "lr": 3e-3, "floor": 0.3}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_one_saved_model_answers_as_the_trained_one(fine_coarse, tmp_path: Path,
                                                    case: str) -> None:
    from transferkit.backbones.cnn import ScratchCNN
    from transferkit.runs.multitask import multitask_run

    sharing, backbone, bn, opts = CASES[case]
    bb = ScratchCNN(32, widths=(8, 16), seed=0) if backbone == "cnn" else backbone
    res = multitask_run(fine_coarse, tmp_path / "mt", backbone=bb, sharing=sharing, bn=bn,
                        epochs=opts.get("epochs", 2), lr=opts.get("lr"), seed=0,
                        image_size=None if backbone == "cnn" else 64,
                        baselines=opts.get("baselines", False), branch=opts.get("branch"))
    fit = res.fit
    assert "one model, a head per task" in res.metrics["saved_model"]
    assert not list(tmp_path.glob("mt/model-*"))
    loaded = TransferModel.load(tmp_path / "mt")
    assert isinstance(loaded.backbone, MultiTaskBackbone)
    assert loaded.head_names == ["fine", "coarse"]
    memory = deployable(fit)
    for t in ("fine", "coarse"):
        _, test = stratified_split(fine_coarse[t], 0.25, 0, what="test")  # the run's split
        p_saved = loaded.predict_all(test.items, cache=False)[t]
        p_memory = memory.predict_proba(test.items, head=t, cache=False)
        np.testing.assert_allclose(p_saved, p_memory, atol=1e-5)
        trained = fit.chosen(t).predictions
        assert (p_saved.argmax(1) == trained).mean() >= 0.97, (t, case)
        # a trained model, not a constant one (chance: 0.1 fine; majority 0.5 coarse)
        floor = opts.get("floor", 0.4) if t == "fine" else 0.6
        assert (p_saved.argmax(1) == test.labels).mean() > floor, (t, case)
    if bn == "task":  # ONNX: one output per head, equal to predict_all
        import onnxruntime as ort
        import torch

        items = fine_coarse["fine"].items[:16]
        path = loaded.export_onnx(tmp_path / "mt.onnx")
        x = torch.stack([loaded.backbone.prepare(i) for i in items]).numpy()
        outs = ort.InferenceSession(str(path)).run(None, {"input": x})
        ref = loaded.predict_all(items, cache=False)
        for out, head in zip(outs, loaded.head_names, strict=True):
            np.testing.assert_allclose(out, ref[head], atol=1e-4)
    if opts.get("baselines"):
        assert fit.kept["fine"] == "single-task"  # the joint model reads no trained stage
        assert loaded.info["kept"] == fit.kept
        # one model mixing a single-task column (fine) and the joint one (coarse)
        fit.kept = {"fine": "single-task", "coarse": "joint"}
        deployable(fit).save(tmp_path / "mixed")
        mixed = TransferModel.load(tmp_path / "mixed")
        assert sorted(mixed.backbone.spec()["nets"]) == ["joint", "single-fine"]
        for t, model in (("fine", fit.single), ("coarse", fit.joint)):
            _, test = stratified_split(fine_coarse[t], 0.25, 0, what="test")
            pred = mixed.predict_all(test.items, cache=False)[t].argmax(1)
            assert (pred == model[t].predictions).mean() >= 0.97, t
        assert (fit.joint["fine"].predictions != fit.single["fine"].predictions).mean() > 0.1
