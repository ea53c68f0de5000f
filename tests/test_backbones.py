"""Backbones: real weights mapped right, preprocessing, stages, registry errors, local files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data as skdata

from transferkit.backbones import load_backbone
from transferkit.errors import BackboneError

CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 968}  # espresso, cup


def _imagenet_top1(backbone, image: np.ndarray) -> int:
    x = backbone.prepare(image).unsqueeze(0)
    with torch.inference_mode():
        return int(backbone.model(x).argmax(dim=1))


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1",
                                  "efficientnet_lite2"])
def test_bundled_weights_classify_real_photos(name: str) -> None:
    b = load_backbone(name, keep_head=True)
    assert _imagenet_top1(b, skdata.chelsea()) in CAT_CLASSES
    assert _imagenet_top1(b, skdata.coffee()) in COFFEE_CLASSES


def test_preprocessing_comes_from_timm_pretrained_config(lite0) -> None:
    cfg = lite0.data_config
    assert cfg["input_size"] == [3, 224, 224]
    assert cfg["interpolation"] == "bicubic"
    assert cfg["mean"] == [0.5, 0.5, 0.5] and cfg["std"] == [0.5, 0.5, 0.5]
    assert lite0.feature_dim == 1280
    x = lite0.prepare(skdata.chelsea())
    assert tuple(x.shape) == (3, 224, 224)


def test_stages_are_ordered_and_cover_every_parameter(lite0) -> None:
    stages = lite0.stages()
    assert stages[0].name == "stem"
    assert [s.name for s in stages[1:]] == [f"blocks.{i}" for i in range(7)]
    covered = [n for s in stages for n in s.param_names]
    assert sorted(covered) == sorted(n for n, _ in lite0.model.named_parameters())
    assert len(set(covered)) == len(covered)


def test_fast_extraction_matches_plain_forward(lite0) -> None:
    images = [skdata.chelsea(), skdata.coffee(), skdata.astronaut()]
    feats = lite0.extract(images, cache=False).features
    batch = torch.stack([lite0.prepare(im) for im in images])
    with torch.inference_mode():
        ref = lite0.forward_features(batch).numpy()
    assert feats.shape == (3, 1280)
    np.testing.assert_allclose(feats, ref, atol=1e-4, rtol=1e-4)


def test_unknown_backbone_suggests_close_names() -> None:
    with pytest.raises(BackboneError, match="efficientnet_lite0"):
        load_backbone("efficientnet_lite")


def test_unknown_timm_arch_suggests_close_names() -> None:
    with pytest.raises(BackboneError, match="resnet18"):
        load_backbone("timm:resnet_18")


def test_timm_hub_offline_says_how_to_pass_local_weights() -> None:
    with pytest.raises(BackboneError, match=r"--backbone path/to/weights.safetensors --arch "
                                            r"resnet18"):
        load_backbone("timm:resnet18")


def test_local_weights_file_reproduces_bundled_features(lite0, tmp_path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "lite0.safetensors"
    save_file({k: v.contiguous() for k, v in lite0.feature_state_dict().items()}, str(path))
    local = load_backbone(path, arch="tf_efficientnet_lite0")
    img = [skdata.coffee()]
    np.testing.assert_allclose(local.extract(img, cache=False).features,
                               lite0.extract(img, cache=False).features, atol=1e-6)
    with pytest.raises(BackboneError, match="--arch"):
        load_backbone(path)
    with pytest.raises(BackboneError, match="do not fit timm architecture 'resnet18'"):
        load_backbone(path, arch="resnet18")
    with pytest.raises(BackboneError, match="not found"):
        load_backbone(tmp_path / "missing.safetensors", arch="resnet18")


def test_cache_key_depends_on_weights(lite0) -> None:
    other = load_backbone("efficientnet_lite0")
    assert other.cache_key() == lite0.cache_key()
    with torch.no_grad():
        other.model.conv_stem.weight[0, 0, 0, 0] += 1.0
    other.invalidate()
    assert other.cache_key() != lite0.cache_key()
    assert load_backbone("pixels").cache_key() != lite0.cache_key()


def test_crop_pct_keeps_the_border_timm_cuts(lite0) -> None:
    """A white image with a black frame 8% wide: timm's crop (0.875) cuts most of the frame
    away, crop_pct=1.0 keeps it; the choice is part of the cache key and of the saved spec."""
    from transferkit.backbones.registry import backbone_from_spec

    img = np.full((100, 100, 3), 255, np.uint8)
    img[:8], img[-8:], img[:, :8], img[:, -8:] = 0, 0, 0, 0
    whole = lite0.with_crop_pct(1.0)
    assert lite0.data_config["crop_pct"] == pytest.approx(0.875)
    assert whole.model is lite0.model and whole.data_config["crop_pct"] == 1.0

    def dark(bb) -> float:  # share of the prepared image darker than mid-grey (unnormalised)
        x = bb.prepare(img)
        std = torch.tensor(bb.data_config["std"])[:, None, None]
        mean = torch.tensor(bb.data_config["mean"])[:, None, None]
        return float(((x * std + mean) < 0.5).float().mean())

    assert dark(whole) == pytest.approx(1 - 0.84 ** 2, abs=0.03)  # the whole frame
    assert dark(lite0) == pytest.approx(1 - (0.84 / 0.875) ** 2, abs=0.03)  # its inner edge
    assert whole.cache_key() != lite0.cache_key()
    again = backbone_from_spec(whole.spec(), whole.model.state_dict())
    assert again.data_config["crop_pct"] == 1.0
    for bad in (0.2, 1.5):
        with pytest.raises(ValueError, match="crop_pct"):
            lite0.with_crop_pct(bad)
