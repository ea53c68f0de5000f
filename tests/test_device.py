"""The one device policy on a machine without a GPU: what auto picks, clear refusals, the
input pipeline's determinism, the feature cache keyed by pipeline and precision, and every
strategy following one device argument."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from transferkit.backbones.pipeline import prepared_batches
from transferkit.data import fashion_mnist_sample, from_folder
from transferkit.device import (
    DeviceError,
    amp_dtype,
    default_workers,
    resolve_device,
    use_defaults,
)
from transferkit.train import TrainConfig, Trainer
from transferkit.train.data import ItemData
from transferkit.train.loader import epoch_batches
from transferkit.train.module import TrainModule
from transferkit.train.plan import ShufflePlan, StreamInfo

SRC = Path(__file__).resolve().parents[1] / "src" / "transferkit"


def test_auto_is_the_cpu_here_and_absent_gpus_are_refused() -> None:
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert amp_dtype(torch.device("cpu"), "auto") is None  # fp32 on the CPU
    assert amp_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
    for spec in ("cuda", "cuda:0", "cuda:7"):
        with pytest.raises(DeviceError, match=re.escape(f"--device {spec}: this machine has "
                                                        f"no CUDA GPU")):
            resolve_device(spec)
    with pytest.raises(DeviceError, match="--device 'gpu': choose auto, cpu, cuda or cuda:N"):
        resolve_device("gpu")
    with pytest.raises(DeviceError, match="--precision 'half'"):
        use_defaults("cpu", "half")
    with pytest.raises(DeviceError, match="--precision 16 needs a GPU"):
        amp_dtype(torch.device("cpu"), "16")


@pytest.mark.parametrize("command", ["fit", "predict", "rank", "fewshot", "adapt"])
def test_cli_device_cuda_without_a_gpu_is_one_error_line(command: str, tmp_path: Path) -> None:
    data = str(fashion_mnist_sample())
    args = {"fit": [data, "--out", str(tmp_path / "r")], "predict": [str(tmp_path), data],
            "rank": [data], "fewshot": [data, "--out", str(tmp_path / "f")],
            "adapt": [data, data, "--out", str(tmp_path / "a")]}[command]
    p = subprocess.run([sys.executable, "-m", "transferkit.cli", command, *args,
                        "--device", "cuda"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert lines == ["error: --device cuda: this machine has no CUDA GPU that PyTorch can use "
                     f"(torch {torch.__version__}); use --device cpu or auto"], p.stderr
    assert not (tmp_path / "r").exists() and not (tmp_path / "f").exists()


def test_workers_default_to_none_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_workers(torch.device("cpu")) == 0
    assert default_workers(torch.device("cuda", 0)) >= 0
    monkeypatch.setenv("TRANSFERKIT_WORKERS", "3")
    assert default_workers(torch.device("cpu")) == 3
    monkeypatch.setenv("TRANSFERKIT_WORKERS", "many")
    with pytest.raises(DeviceError, match="TRANSFERKIT_WORKERS='many'"):
        default_workers(torch.device("cpu"))


def _augmented_batches(bb, ds, workers: int, epoch: int) -> list[torch.Tensor]:
    from transferkit.data.augment import augment_transform

    data = ItemData(bb, ds.items, ds.labels, augment=augment_transform("light"))
    plan = ShufflePlan("train")
    info = {"train": StreamInfo(len(data), np.asarray(data.labels))}
    steps = plan.epoch(info, batch_size=8, seed=3, epoch=epoch, rank=0, world=1)
    out = epoch_batches(steps, {"train": data}, {"train": data.collate}, True,
                        device=torch.device("cpu"), workers=workers, seed=3, epoch=epoch)
    return [x for x, _ in out]


def test_worker_count_does_not_change_augmented_training_batches(tiny_backbones) -> None:
    from transferkit.backbones import load_backbone

    bb = load_backbone(tiny_backbones["image"])
    ds = from_folder(fashion_mnist_sample()).subset(list(range(0, 600, 25)))
    one = _augmented_batches(bb, ds, 1, epoch=0)
    two = _augmented_batches(bb, ds, 2, epoch=0)
    assert len(one) == len(two) == 3
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a, b)
    # the augmentation is random: another epoch draws other images (negative control)
    other = _augmented_batches(bb, ds, 2, epoch=1)
    assert not all(a.shape == b.shape and torch.equal(a, b)
                   for a, b in zip(one, other, strict=True))


def test_extraction_in_worker_processes_gives_todays_features(tiny_backbones,
                                                              monkeypatch) -> None:
    from transferkit.backbones import load_backbone

    bb = load_backbone(tiny_backbones["image"])
    ds = from_folder(fashion_mnist_sample()).subset(list(range(0, 600, 12)))
    today = bb.extract(ds, cache=False, batch_size=8).features
    monkeypatch.setenv("TRANSFERKIT_WORKERS", "2")
    pipe = bb.pipeline(torch.device("cpu"))
    assert pipe.tag == "" and pipe.parallel
    items = [bb.normalize_item(i) for i in ds.items]
    batches = [list(range(s, min(s + 8, len(items)))) for s in range(0, len(items), 8)]
    with torch.inference_mode():
        feats = [bb.forward_features(p.batch) for p in prepared_batches(
            pipe, items, ds.origins, batches, workers=2)]
    np.testing.assert_allclose(torch.cat(feats).numpy(), today, atol=1e-5)


def test_device_preprocessing_agrees_and_is_cached_apart(monkeypatch, tmp_path) -> None:
    """The GPU path's preprocessing (resize/crop/normalise on the device), forced here on
    the CPU: features close to the PIL path's, under their own cache key."""
    from transferkit.backbones import FeatureCache, load_backbone

    bb = load_backbone("efficientnet_lite0").with_image_size(96)
    ds = from_folder(fashion_mnist_sample()).subset(list(range(0, 600, 20)))
    cache = FeatureCache(tmp_path / "cache")
    host = bb.extract(ds, cache=cache)
    monkeypatch.setenv("TRANSFERKIT_PREPROCESS", "device")
    dev = bb.extract(ds, cache=cache)
    assert dev.cache_hits == 0 and dev.computed == len(ds)  # never served the host features
    a, b = host.features, dev.features
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.mean() > 0.98 and cos.min() > 0.95, (cos.mean(), cos.min())
    # a negative control: features of other images are far less alike
    shuffled = (a * b[::-1]).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert shuffled.mean() < cos.mean() - 0.1
    again = bb.extract(ds, cache=cache)
    assert again.cache_hits == len(ds)


class _OOM(TrainModule):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2)

    def training_step(self, batch, ctx):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_out_of_memory_names_the_batch_size_to_lower() -> None:
    data = [(torch.zeros(2), 0), (torch.ones(2), 1)] * 4
    with pytest.raises(DeviceError, match=r"ran out of memory at batch size 4 on cpu; lower "
                                          r"--batch-size \(e.g. --batch-size 2\)"):
        Trainer(TrainConfig(epochs=1, batch_size=4), progress=False).fit(_OOM(), data)


def test_precision_32_equals_auto_on_the_cpu() -> None:
    def run(precision: str) -> torch.Tensor:
        torch.manual_seed(0)
        net = _Lin()
        data = [(torch.randn(4), i % 2) for i in range(16)]
        Trainer(TrainConfig(epochs=2, batch_size=4, precision=precision, seed=1),
                progress=False).fit(net, data)
        return net.lin.weight.detach().clone()

    w32, wauto, wbf16 = run("32"), run("auto"), run("bf16")
    assert torch.equal(w32, wauto)
    assert not torch.equal(w32, wbf16)  # autocast really changes the arithmetic


class _Lin(TrainModule):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def training_step(self, batch, ctx):
        x, y = batch
        logits = self.lin(x)
        return {"loss": nn.functional.cross_entropy(logits.float(), y)}


def test_every_strategy_takes_one_device_argument() -> None:
    from transferkit.strategies import STRATEGIES

    for name, spec in STRATEGIES.items():
        assert spec.accepts("device"), name
        assert spec.cls().get_params()["device"] == "auto", name
        assert "device" not in spec.user_options(), name  # a run-level setting


def test_trainer_and_backbone_follow_the_strategy_device(tiny_backbones, tiny_data,
                                                         monkeypatch) -> None:
    """Every device decision goes through resolve_device with the strategy's argument."""
    import transferkit.backbones.base as base
    import transferkit.train.trainer as trainer
    from transferkit.strategies import make_strategy

    seen: list[str] = []

    def spy(spec="auto", option="--device"):
        seen.append(str(spec))
        return resolve_device(spec, option)

    monkeypatch.setattr(trainer, "resolve_device", spy)
    monkeypatch.setattr(base, "resolve_device", spy)
    train, val = tiny_data["image"]
    est = make_strategy("finetune", context={"backbone": tiny_backbones["image"],
                                             "cache": False, "seed": 0, "device": "cpu"},
                        epochs=1, head_epochs=1)
    est.fit(train, X_val=val)
    est.predict_proba(val.items)
    assert seen and set(seen) == {"cpu"}, seen


def test_no_training_path_moves_tensors_by_hand() -> None:
    """Only the device policy decides where tensors live: no ``.to("cpu")`` or
    ``torch.device("cpu")`` in a training path."""
    paths = [*(SRC / "strategies").glob("*.py"), *(SRC / "train").glob("*.py"),
             *(SRC / "multitask").glob("*.py"), *(SRC / "fewshot").glob("*.py"),
             SRC / "fewshot_run.py"]
    bad = [f"{p.relative_to(SRC)}:{i}" for p in paths if p.exists()
           for i, line in enumerate(p.read_text().splitlines(), 1)
           if re.search(r"\.to\(\s*[\"']cpu[\"']\s*\)|torch\.device\(\s*[\"']cpu", line)
           and "policy" not in line]
    assert not bad, bad


def test_device_logreg_matches_scikit_learn_on_real_features() -> None:
    """The probe's GPU solver (run here on the CPU) reaches scikit-learn's optimum."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from transferkit.heads import fit_logreg

    x, y = load_digits(return_X_y=True)
    x = StandardScaler().fit_transform(x[:1000]).astype(np.float32)
    xa, ya, xb, yb = x[:600], y[:600], x[600:1000], y[600:1000]
    chance = np.bincount(yb).max() / len(yb)
    for C in (0.01, 1.0):
        ref = LogisticRegression(C=C, max_iter=5000, tol=1e-6).fit(xa, ya)
        W, B = fit_logreg(xa, ya, 10, C, torch.device("cpu"), tol=1e-6)
        ours = (xb @ W.T + B).argmax(1)
        assert (ours == ref.predict(xb)).mean() >= 0.98
        assert (ours == yb).mean() > chance + 0.5  # it has learnt the digits
        np.testing.assert_allclose(W, ref.coef_, atol=0.05 * np.abs(ref.coef_).max())
    # a class absent from training is never predicted
    keep = ya != 3
    W, B = fit_logreg(xa[keep], ya[keep], 10, 1.0, torch.device("cpu"))
    assert 3 not in set((xb @ W.T + B).argmax(1))


def test_jpeg_bytes_decoded_in_one_batch_equal_the_pil_decode(tmp_path: Path) -> None:
    """The GPU path's batched JPEG decoding (run here on the CPU) decodes what PIL does."""
    from PIL import Image
    from skimage import data

    from transferkit.backbones.devprep import DevicePreprocess, JpegBytes

    paths = []
    for i, name in enumerate(["astronaut", "coffee", "chelsea"]):
        paths.append(tmp_path / f"{i}.jpg")
        Image.fromarray(getattr(data, name)()).convert("RGB").save(paths[-1], quality=90)
    cfg = {"input_size": [3, 96, 96], "interpolation": "bicubic", "crop_pct": 0.875,
           "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    on = DevicePreprocess(cfg, 256, gpu_jpeg=True)  # (no reduced-size PIL decode)
    off = DevicePreprocess(cfg, 256, gpu_jpeg=False)
    raw = [on.decode(p) for p in paths]
    assert all(isinstance(r, JpegBytes) for r in raw)
    cpu = torch.device("cpu")
    xa = on.to_input(on.collate(raw), cpu)
    xb = off.to_input(off.collate([off.decode(p) for p in paths]), cpu)
    assert xa.shape == (3, 3, 96, 96)
    assert torch.allclose(xa, xb, atol=1e-5)
    assert not torch.allclose(xa[0], xa[1], atol=0.1)  # three different photos


def test_precision_32_on_the_cpu_gives_the_results_from_before_the_device_policy() -> None:
    """Fine-tuning (augmentation, holdout, fp32) predicts and logs exactly what it did before
    the device policy and the input pipeline were written (fixture from commit 9ebe928)."""
    import json

    from transferkit.backbones import ScratchCNN
    from transferkit.strategies import FineTuneClassifier

    ref = json.loads((Path(__file__).parent / "fixtures" /
                      "finetune_fp32_before_device_policy.json").read_text())
    ds = from_folder(fashion_mnist_sample())
    tr, te = ds.subset(list(range(0, 600, 3))), ds.subset(list(range(1, 600, 7)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        est = FineTuneClassifier(backbone=ScratchCNN(image_size=16, widths=(8, 16)),
                                 epochs=3, head_epochs=1, augment="light", holdout=0.2,
                                 fallback="none", refit=False, seed=0, cache=False,
                                 precision="32").fit(tr)
        p = est.predict_proba(te)
    finally:
        torch.set_num_threads(threads)
    assert p.argmax(1).tolist()[:40] == ref["argmax"]
    np.testing.assert_allclose(np.round(p[:3], 6), ref["first"], atol=1e-6)
    losses = [round(r["train_loss"], 8) for r in est.history_
              if r.get("train_loss") is not None]
    assert losses == ref["history"]
