"""Speech as a third modality: the PyTorch encoder equals ONNX Runtime on real audio,
resampling keeps length and pitch, readers name the file, the pretrained embeddings beat
log-mel statistics on real recordings, freezing the last stages leaves them unchanged, saved
models predict identically and export to ONNX."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from transferkit.backbones import load_backbone
from transferkit.backbones.speech import openwakeword_models
from transferkit.cli import app
from transferkit.data import load_data
from transferkit.data.audio import load_audio
from transferkit.data.samples import real_digits, spoken_digits
from transferkit.errors import DataError
from transferkit.model import TransferModel
from transferkit.strategies import FineTuneClassifier, ProbeClassifier

VOICES = ["en-gb", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us+f3", "en-gb+f2",
          "en-us+m3"]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory):
    """320 synthetic spoken digits: 8 espeak-ng voices x 2 speeds x 2 pitches."""
    return spoken_digits(tmp_path_factory.mktemp("digits"), VOICES, speeds=(130, 170),
                         pitches=(40, 60))


@pytest.fixture(scope="module")
def speech():
    return load_backbone("speech_embedding")


def test_pytorch_encoder_equals_onnx_runtime_on_real_audio(speech) -> None:
    _, emb = openwakeword_models()
    sess = ort.InferenceSession(str(emb), providers=["CPUExecutionProvider"])
    for d in (3, 7):
        windows = speech.prepare(real_digits("en").items[d])
        ref = sess.run(None, {"input_1": windows.numpy()[..., None]})[0].reshape(len(windows),
                                                                                  -1)
        with torch.no_grad():
            got = speech.embed_windows(windows).numpy()
        assert np.abs(ref - got).max() <= 1e-4


@pytest.mark.parametrize("rate", [8000, 44100])
def test_resampling_keeps_length_and_pitch(tmp_path: Path, rate: int) -> None:
    t = np.arange(rate) / rate  # one second of a 440 Hz tone
    sf.write(tmp_path / "tone.wav", 0.5 * np.sin(2 * np.pi * 440 * t), rate)
    x = load_audio(tmp_path / "tone.wav")
    assert abs(len(x) - 16000) <= 2
    freqs = np.fft.rfftfreq(len(x), 1 / 16000)
    assert abs(freqs[np.abs(np.fft.rfft(x)).argmax()] - 440) < 2


def test_readers_name_the_bad_file(tmp_path: Path) -> None:
    (tmp_path / "noise.wav").write_bytes(b"RIFF garbage, not audio")
    sf.write(tmp_path / "empty.wav", np.zeros(0), 16000)
    for name, needle in (("noise.wav", "cannot read audio"), ("empty.wav", "empty audio"),
                         ("missing.wav", "not found")):
        with pytest.raises(DataError, match=needle) as err:
            load_audio(tmp_path / name)
        assert name in str(err.value)
    folder = tmp_path / "clips"
    (folder / "a").mkdir(parents=True)
    sf.write(folder / "a" / "x.wav", np.zeros(800), 8000)
    ds = load_data(folder)
    assert ds.modality == "audio" and ds.noun == "clip(s)"


def test_pretrained_embeddings_beat_log_mel_on_real_speech(synthetic) -> None:
    """Trained on synthetic voices, tested on a real speaker: the seed's cross-voice case."""
    real = real_digits("en")
    accs = {}
    for bb in ("speech_embedding", "logmel"):
        est = ProbeClassifier(backbone=bb, seed=0, cache=False).fit(synthetic)
        accs[bb] = float((est.predict_proba(real).argmax(1) == real.labels).mean())
    assert accs["speech_embedding"] >= 0.8, accs  # measured 10/10
    assert accs["speech_embedding"] >= accs["logmel"] + 0.3, accs  # log-mel: 6/10


def test_freezing_the_last_stages_leaves_them_unchanged(synthetic, speech) -> None:
    start = {k: v.clone() for k, v in speech.model.state_dict().items()}
    idx = np.arange(0, len(synthetic), 4)
    est = FineTuneClassifier(backbone=speech, freeze_last=3, head_epochs=0, holdout=0,
                             epochs=1, seed=0, cache=False).fit(synthetic.subset(idx))
    after = est.backbone_.model.state_dict()
    for i, stage in enumerate(est.backbone_.stages()):
        changed = [n for n in stage.param_names if not torch.equal(after[n], start[n])]
        if i >= 3:  # the last three stages
            assert changed == [], stage.name
        else:
            assert changed, f"{stage.name} did not train"
    assert "the top 3 kept frozen" in est.recipe_


def test_save_load_predict_and_onnx_export_agree(synthetic, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["fit", str(synthetic.source), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    model = TransferModel.load(tmp_path / "r")
    real = real_digits("en")
    p = model.predict_proba(real.items, cache=False)
    html = (tmp_path / "r" / "report.html").read_text()
    assert "data:audio/wav;base64," in html  # the gallery plays the clips
    exp = CliRunner().invoke(app, ["export", str(tmp_path / "r"), "--onnx",
                                   str(tmp_path / "m.onnx")])
    assert exp.exit_code == 0, exp.output
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    assert "melspectrogram.onnx" in json.loads(meta["preprocessing"])["front_end"]
    batch = model.backbone.padded([model.backbone.prepare(real.items[7])])
    onnx_p = sess.run(None, {"windows": batch["windows"].numpy(),
                             "mask": batch["mask"].numpy()})[0]
    np.testing.assert_allclose(onnx_p[0], p[7], atol=1e-4)
    assert onnx_p[0].argmax() == p[7].argmax()
