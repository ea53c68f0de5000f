"""Reading audio: files (WAV, FLAC, OGG, ...) or arrays into 16 kHz mono float waveforms.

Files are read with ``soundfile`` (libsndfile), mixed down to mono and resampled with
``soxr`` (a proper band-limited resampler). Every failure is a ``DataError`` naming the file:
unreadable, empty, zero-length, or a sample format libsndfile cannot decode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from transferkit.errors import DataError

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff",
                              ".aif", ".au", ".snd"})
SAMPLE_RATE = 16_000


def is_audio_file(path: Path) -> bool:
    """True when the file name has a known audio extension."""
    return path.suffix.lower() in AUDIO_EXTENSIONS


def resample(x: np.ndarray, rate: int, to: int = SAMPLE_RATE) -> np.ndarray:
    """``x`` (mono float) from ``rate`` to ``to`` Hz with soxr's high-quality resampler."""
    if rate == to:
        return x.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(x.astype(np.float32, copy=False), rate, to, quality="HQ")


def wav_shortfall(path: Path) -> str | None:
    """For a WAV file whose data chunk is cut short, what its header promises and what the
    file holds; None for a complete file (or one that is no WAV: libsndfile says so)."""
    import struct

    if path.suffix.lower() != ".wav":
        return None
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            cid, n = struct.unpack("<4sI", f.read(8))
            if cid == b"data":
                have = size - pos - 8
                if n not in (0, 0xFFFFFFFF) and have < n:
                    return (f"its header promises {n} bytes of audio, the file holds "
                            f"{have}")
                return None
            pos += 8 + n + (n & 1)
    return "no audio data chunk before the end of the file"


def load_audio(item: Any, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A mono float32 waveform in [-1, 1] at ``sample_rate`` Hz, from a file path or an array
    (an array is taken as already at ``sample_rate``; a ``(waveform, rate)`` pair is
    resampled)."""
    if isinstance(item, tuple) and len(item) == 2:
        x, rate = np.asarray(item[0], dtype=np.float32), int(item[1])
        where = "<array>"
    elif isinstance(item, np.ndarray):
        x, rate, where = item.astype(np.float32, copy=False), sample_rate, "<array>"
    else:
        path = Path(item)
        where = str(path)
        if not path.is_file():
            raise DataError(f"{path}: audio file not found")
        import soundfile as sf

        short = wav_shortfall(path)
        if short is not None:
            raise DataError(f"{path}: truncated WAV file ({short})")
        try:
            x, rate = sf.read(str(path), dtype="float32", always_2d=True)
        except (RuntimeError, sf.LibsndfileError, ValueError) as exc:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(f"{path}: cannot read audio ({detail})") from None
        x = x.mean(axis=1)  # mix down to mono
    if x.ndim == 2:
        x = x.mean(axis=1 if x.shape[1] <= 8 else 0)
    if x.ndim != 1:
        raise DataError(f"{where}: expected a waveform, got an array of shape {x.shape}")
    if x.size == 0:
        raise DataError(f"{where}: empty audio (zero samples)")
    if not np.isfinite(x).all():
        raise DataError(f"{where}: audio holds non-finite samples")
    return np.clip(resample(x, rate, sample_rate), -1.0, 1.0)


