"""The one device policy: which device a run computes on, and in which precision.

``--device auto|cpu|cuda|cuda:N`` (``device=`` on the estimators) is decided here and nowhere
else: ``auto`` is this process's GPU under ``torchrun`` (``LOCAL_RANK``), else the first GPU
when there is one, else the CPU. ``--precision auto|32|bf16|16``: ``auto`` is bf16 autocast
on a GPU that supports it (fp16 on one that does not) and fp32 on the CPU. Strategies never
pick a device themselves; they receive the one resolved here.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from transferkit.errors import TransferkitError

if TYPE_CHECKING:
    import torch

DEVICE_HELP = ("Where to compute: auto (the GPU when there is one; torchrun's local rank "
               "when distributed), cpu, cuda or cuda:N.")
PRECISION_HELP = ("Numeric precision: auto (bf16 autocast on a GPU that supports it, fp32 "
                  "on the CPU), 32, bf16 or 16 (fp16 with loss scaling).")
PRECISIONS = ("auto", "32", "bf16", "16")
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")

DeviceLike = "str | torch.device | None"

#: what ``auto`` means in this process: set once by a command's --device/--precision
_DEFAULTS = {"device": "auto", "precision": "auto"}


class DeviceError(TransferkitError, ValueError):
    """A device or precision that this machine cannot provide."""


def check_device_text(spec: DeviceLike, option: str = "--device") -> str:
    """The device option's text, checked for its form only (no CUDA call: cheap, before any
    heavy import); raises DeviceError naming the option."""
    text = "auto" if spec is None else str(spec).strip().lower()
    if not _DEVICE_RE.match(text):
        raise DeviceError(f"{option} {spec!r}: choose auto, cpu, cuda or cuda:N "
                          f"(N = the GPU's index)")
    return text


def check_precision_text(precision: str, option: str = "--precision") -> str:
    """The precision option's text, checked; raises DeviceError naming the option."""
    text = str(precision).strip().lower()
    text = {"fp32": "32", "float32": "32", "fp16": "16", "float16": "16",
            "bfloat16": "bf16"}.get(text, text)
    if text not in PRECISIONS:
        raise DeviceError(f"{option} {precision!r}: choose one of {', '.join(PRECISIONS)}")
    return text


def use_defaults(device: DeviceLike = "auto", precision: str = "auto") -> torch.device:
    """Make ``device``/``precision`` what ``auto`` means in this process (a command's
    --device and --precision); returns the device, checked now (DeviceError if absent)."""

    text = check_device_text(device)
    _DEFAULTS["precision"] = check_precision_text(precision)
    _DEFAULTS["device"] = "auto"
    dev = resolve_device(text)
    _DEFAULTS["device"] = text
    return dev


def default_precision() -> str:
    """What precision ``auto`` stands for in this process (``auto`` unless a command set it)."""
    return _DEFAULTS["precision"]


def resolve_device(spec: DeviceLike = "auto", option: str = "--device") -> torch.device:
    """The torch device ``spec`` names on this machine; DeviceError when it has none such.
    ``auto`` is the process default (a command's --device) when one was set."""
    import torch

    if isinstance(spec, torch.device):
        spec = str(spec)
    text = check_device_text(spec, option)
    if text == "auto" and _DEFAULTS["device"] != "auto":
        text = _DEFAULTS["device"]
    if text == "cpu":
        return torch.device("cpu")
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", _local_rank() % torch.cuda.device_count())
        return torch.device("cpu")
    if text == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise DeviceError(f"{option} mps: this machine has no Apple GPU; use "
                              f"{option} cpu")
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise DeviceError(f"{option} {text}: this machine has no CUDA GPU that PyTorch can "
                          f"use (torch {torch.__version__}); use {option} cpu or auto")
    count = torch.cuda.device_count()
    index = int(text.partition(":")[2] or _local_rank())
    if index >= count:
        raise DeviceError(f"{option} {text}: this machine has {count} GPU(s), "
                          f"cuda:0..cuda:{count - 1}")
    return torch.device("cuda", index)


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0) or 0)


def amp_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; None = fp32 (no autocast).

    Asking for bf16 or 16 on the CPU is honoured (CPU autocast supports bf16; fp16 there is
    refused with a clear message, since CPUs compute it slowly and without loss scaling).
    """
    import torch

    p = check_precision_text(precision)
    if p == "auto":
        p = _DEFAULTS["precision"]
    if p == "32" or (p == "auto" and device.type != "cuda"):
        return None
    if p == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if p == "16" and device.type == "cpu":
        raise DeviceError("--precision 16 needs a GPU; on the CPU use 32 or bf16")
    return torch.bfloat16 if p == "bf16" else torch.float16


def precision_name(device: torch.device, precision: str = "auto") -> str:
    """What ``precision`` means on ``device``: '32', 'bf16' or '16' (for reports, cache keys)."""
    import torch

    dt = amp_dtype(device, precision)
    return "32" if dt is None else ("bf16" if dt == torch.bfloat16 else "16")


MAX_WORKERS = 16


def where(module: torch.nn.Module) -> torch.device:
    """The device holding ``module``'s parameters (or buffers); the CPU when it has none."""
    import torch

    for t in [*module.parameters(), *module.buffers()]:
        return t.device
    return torch.device("cpu")


def default_workers(device: torch.device) -> int:
    """Input worker processes for a device: none on the CPU (its cores compute), else one
    per core but one, at most 16 (``TRANSFERKIT_WORKERS`` overrides)."""

    env = os.environ.get("TRANSFERKIT_WORKERS", "").strip()
    if env:
        if not env.isdigit():
            raise DeviceError(f"TRANSFERKIT_WORKERS={env!r}: give a number of processes "
                              f"(0: none)")
        return int(env)
    if device.type == "cpu":
        return 0
    return max(0, min(MAX_WORKERS, (os.cpu_count() or 1) - 1))


def move(obj: Any, device: torch.device) -> Any:
    """Tensors (alone, in lists, tuples or dicts) on ``device``; other objects unchanged.
    Copies from pinned memory run asynchronously."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=obj.is_pinned())
    if isinstance(obj, (list, tuple)):
        return type(obj)(move(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: move(v, device) for k, v in obj.items()}
    return obj


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is the device (or the host) running out of memory."""
    import torch

    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def out_of_memory_error(exc: BaseException, device: torch.device, batch_size: int | None,
                        what: str = "training") -> DeviceError:
    """One clear message for an out-of-memory failure, naming the batch size to lower."""
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
    where = "the GPU" if device.type == "cuda" else "memory"
    bs = f" at batch size {batch_size}" if batch_size else ""
    lower = f" (e.g. --batch-size {max(1, batch_size // 2)})" if batch_size else ""
    return DeviceError(f"{what} ran out of {where}{bs} on {device}; lower --batch-size{lower} "
                       f"or --image-size, and add --resume RUN to continue a run")
