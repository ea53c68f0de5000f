"""CLIP-style image-text backbones through the registry: offline, a hub name says how to
pass local weights; a tiny randomly initialised architecture runs the whole zero-shot path
(embed images and class texts, score, save, reload offline)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import open_clip
import pytest

from transferkit.backbones import load_backbone
from transferkit.errors import BackboneError
from transferkit.model import TransferModel
from transferkit.runs.zeroshot import zeroshot_run

TINY = {"embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16,
                       "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                     "layers": 1}}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("clip-configs")
    (folder / "tiny-clip-test.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(folder)
    return "clip:tiny-clip-test@random"


def test_a_hub_name_offline_says_how_to_pass_local_weights(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BackboneError, match=r"clip:ViT-B-32@/path/to/"):
        load_backbone("clip:ViT-B-32")
    with pytest.raises(BackboneError, match="unknown CLIP architecture"):
        load_backbone("clip:ViT-Nope")


def test_tiny_clip_embeds_images_and_texts_in_one_space(tiny_clip: str, sample_dir: Path,
                                                        tmp_path: Path) -> None:
    import torch

    bb = load_backbone(tiny_clip)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # weights no re-initialisation can give back
        for prm in bb.model.parameters():
            prm.add_(0.05 * torch.randn(prm.shape, generator=g))
    imgs = sorted((sample_dir / "bag").glob("*.png"))[:4]
    f = bb.extract(imgs, cache=False).features
    t = bb.text_features(["a photo of a bag", "a photo of a shoe"])
    assert f.shape == (4, 16) and t.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-5)
    res = zeroshot_run(sample_dir, tmp_path / "zs", unseen=["sandal", "shirt"], method="clip",
                       backbone=bb, seed=0)
    assert res.metrics["gzsl"]["gamma"] == 0.0 and res.metrics["train_images"] > 0
    model = TransferModel.load(tmp_path / "zs")
    assert model.backbone.spec()["type"] == "clip"
    # the reloaded model is the trained one: the same image and text embeddings, which a
    # freshly initialised model does not give
    np.testing.assert_allclose(model.backbone.extract(imgs, cache=False).features, f,
                               atol=1e-5)
    np.testing.assert_allclose(model.backbone.text_features(["a photo of a bag"]), t[:1],
                               atol=1e-5)
    fresh = load_backbone(tiny_clip).extract(imgs, cache=False).features
    assert np.abs(fresh - f).max() > 0.01
    p = model.predict_proba(imgs, cache=False)
    assert p.shape == (4, 10)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
