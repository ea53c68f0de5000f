"""An exported ONNX model answers what ``predict`` answers on the same files, for every kind
of model a run can hold: probe heads (logreg, svm, knn, mlp), fine-tuned and prototype
networks, a zero-shot image model and a LoRA text model (tiny backbones, so it is quick)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from transferkit.model import TransferModel
from transferkit.strategies import make_strategy

CASES = {
    "probe-logreg": ("probe", "image", {"head": "logreg"}),
    "probe-svm": ("probe", "image", {"head": "svm"}),
    "probe-knn": ("probe", "image", {"head": "knn", "k": 3}),
    "probe-mlp": ("probe", "image", {"head": "mlp", "hidden": 16}),
    "finetune": ("finetune", "image", {"epochs": 6, "lr": 0.05, "fallback": "none"}),
    "protonet": ("protonet", "image", {"ways": 3, "shots": 2, "queries": 3, "episodes": 4,
                                       "holdout": 0, "epochs": 1}),
    "lora": ("lora", "text", {"epochs": 2}),
}


def _onnx_proba(model: TransferModel, items: list, path: Path) -> np.ndarray:
    import onnxruntime as ort
    import torch
    from tokenizers import Tokenizer

    model.export_onnx(path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    assert json.loads(meta["class_names"]) == model.class_names
    if "tokenizer" in meta:
        enc = Tokenizer.from_str(meta["tokenizer"]).encode_batch(items)
        feed = {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64)}
    else:
        feed = {"input": torch.stack([model.backbone.prepare(f) for f in items]).numpy()}
    return sess.run(None, feed)[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_onnx_answers_what_predict_answers(case: str, tiny_backbones, tiny_data,
                                           tmp_path: Path) -> None:
    name, modality, options = CASES[case]
    train, val = tiny_data[modality]
    est = make_strategy(name, context={"backbone": tiny_backbones[modality], "cache": False,
                                       "seed": 0, "checkpoint_dir": None}, **options)
    est.fit(train, X_val=val)
    est.model_.save(tmp_path / "run")
    model = TransferModel.load(tmp_path / "run")  # what `predict RUN FILES` loads
    want = model.predict_proba(val.items, cache=False)
    got = _onnx_proba(model, list(val.items), tmp_path / "m.onnx")
    assert got.shape == want.shape == (len(val), 3)
    np.testing.assert_allclose(got, want, atol=1e-4)
    # the answers differ from item to item far beyond the tolerance: an export that ignored
    # its input, or answered for the wrong item, would fail
    assert np.ptp(want, axis=0).max() > 0.005


def test_onnx_of_a_zero_shot_image_model_answers_what_predict_answers(
        sample_dir: Path, tiny_backbones, tmp_path: Path) -> None:
    from transferkit.data.samples import fashion_mnist_classes
    from transferkit.runs.zeroshot import zeroshot_run

    desc, _ = fashion_mnist_classes()
    zeroshot_run(sample_dir, tmp_path / "zs", unseen=["sandal", "shirt"], method="ridge",
                 descriptions=desc, backbone=tiny_backbones["image"], seed=0)
    model = TransferModel.load(tmp_path / "zs")
    files = sorted(sample_dir.glob("*/*.png"))[::15]
    want = model.predict_proba(files, cache=False)
    got = _onnx_proba(model, files, tmp_path / "zs.onnx")
    assert got.shape == want.shape == (len(files), 10)
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert len(set(want.argmax(1))) > 1
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
