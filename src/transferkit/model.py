"""TransferModel: a fitted backbone + one or more named heads with their class names;
save, load, predict, export.

A model has one head per task (one, ``default``, for an ordinary classifier). The run
directory's ``config.json`` is versioned: format 2 lists the heads; format-1 directories
(one head, written before multi-head models) still load and predict identically.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from transferkit import __version__
from transferkit._io import (
    atomic_path,
    cannot_write,
    make_dir,
    write_bytes_atomic,
    write_json_atomic,
)
from transferkit.backbones import Backbone, FeatureCache, Features, backbone_from_spec
from transferkit.data.dataset import Dataset
from transferkit.device import where
from transferkit.errors import RunError
from transferkit.heads import Head

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
DEFAULT_HEAD = "default"


class _Heads(nn.Module):
    """Features -> a tuple with every head's probabilities (multi-head ONNX export)."""

    def __init__(self, heads: Mapping[str, Head]) -> None:
        super().__init__()
        self.heads = nn.ModuleList(heads.values())

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(h(features) for h in self.heads)


class TransferModel:
    """A backbone and named heads that turn items into class probabilities.

    ``TransferModel(backbone, head, class_names)`` is a one-head classifier;
    ``TransferModel(backbone, {"task": head, ...}, {"task": class_names, ...})`` holds one
    head per task (the first is the default for ``predict``).
    """

    def __init__(self, backbone: Backbone, head: Head | Mapping[str, Head],
                 class_names: Sequence[str] | Mapping[str, Sequence[str]],
                 info: dict[str, Any] | None = None) -> None:
        if isinstance(head, Mapping):
            if not isinstance(class_names, Mapping) or set(class_names) != set(head):
                given = list(class_names) if isinstance(class_names, Mapping) else "one list"
                raise ValueError(f"a multi-head model needs class names for exactly its heads: "
                                 f"heads {list(head)}, class names for {given}")
            if not head:
                raise ValueError("a model needs at least one head")
            heads = dict(head)
            names = {k: list(class_names[k]) for k in heads}
        else:
            heads = {DEFAULT_HEAD: head}
            names = {DEFAULT_HEAD: list(class_names)}  # type: ignore[arg-type]
        for k, h in heads.items():
            if int(h.config["num_classes"]) != len(names[k]):
                raise ValueError(f"head {k!r} has {h.config['num_classes']} outputs but "
                                 f"{len(names[k])} class names")
        self.backbone = backbone
        self.heads = {k: h.eval() for k, h in heads.items()}
        self.task_classes = names
        self.info = dict(info or {})

    # --- heads ---------------------------------------------------------------------------
    @property
    def head_names(self) -> list[str]:
        """The heads' names, default first."""
        return list(self.heads)

    @property
    def head(self) -> Head:
        """The default (first) head."""
        return next(iter(self.heads.values()))

    @property
    def class_names(self) -> list[str]:
        """The default head's class names."""
        return next(iter(self.task_classes.values()))

    def _head(self, name: str | None) -> tuple[Head, list[str]]:
        key = self.head_names[0] if name is None else name
        if key not in self.heads:
            raise ValueError(f"no head {key!r} in this model; heads: {', '.join(self.heads)}")
        return self.heads[key], self.task_classes[key]

    # --- inference ----------------------------------------------------------------------
    def features(self, data: Dataset | Sequence[Any], *, cache: FeatureCache | bool | None = None,
                 skip_bad: bool = False, batch_size: int | None = None,
                 progress: Any = None) -> Features:
        """Backbone features for items (see Backbone.extract)."""
        return self.backbone.extract(data, cache=cache, skip_bad=skip_bad,
                                     batch_size=batch_size, progress=progress)

    def proba_from_features(self, features: np.ndarray, head: str | None = None) -> np.ndarray:
        """Class probabilities of one head (default: the first) from extracted features."""
        h, _ = self._head(head)
        with torch.inference_mode():  # the head stays where training left it
            x = torch.as_tensor(features, dtype=torch.float32).to(where(h))
            return h(x).cpu().numpy()

    def predict_proba(self, data: Dataset | Sequence[Any], head: str | None = None,
                      **kw: Any) -> np.ndarray:
        """Class probabilities [n, K] of one head for each item (every item readable)."""
        return self.proba_from_features(self.features(data, **kw).features, head)

    def predict(self, data: Dataset | Sequence[Any], head: str | None = None,
                **kw: Any) -> list[str]:
        """Predicted class name of one head (default: the first) for each item."""
        _, names = self._head(head)
        return [names[i] for i in self.predict_proba(data, head, **kw).argmax(axis=1)]

    def predict_all(self, data: Dataset | Sequence[Any], **kw: Any) -> dict[str, np.ndarray]:
        """Every head's class probabilities, from one pass of the backbone."""
        feats = self.features(data, **kw).features
        return {k: self.proba_from_features(feats, k) for k in self.heads}

    def to_module(self, head: str | None = None) -> nn.Module:
        """One nn.Module: prepared input batch -> class probabilities of one head."""
        return nn.Sequential(self.backbone.feature_module(), self._head(head)[0]).eval()

    # --- persistence --------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The JSON config that, with the weights file, rebuilds this model offline."""
        return {"format_version": FORMAT_VERSION, "transferkit_version": __version__,
                "task": "classification", "modality": self.backbone.modality,
                "class_names": self.class_names, "backbone": self.backbone.spec(),
                "heads": [{"name": k, "class_names": self.task_classes[k],
                           "config": h.config} for k, h in self.heads.items()],
                "info": self.info}

    def save(self, run_dir: str | Path) -> Path:
        """Write config.json and model.safetensors into ``run_dir`` (each atomically)."""
        run_dir = make_dir(run_dir)
        tensors = {f"backbone.{k}": v.detach().cpu().contiguous().clone()
                   for k, v in self.backbone.feature_state_dict().items()}
        for name, h in self.heads.items():
            tensors.update({f"heads.{name}.{k}": v.detach().cpu().contiguous().clone()
                            for k, v in h.state_dict().items()})
        with atomic_path(run_dir / WEIGHTS_FILE) as tmp:
            try:
                save_file(tensors, str(tmp), metadata={"format": "transferkit",
                                                       "version": __version__})
            except Exception as exc:  # SafetensorError wraps the I/O error (disk full, ...)
                raise RunError(f"{run_dir / WEIGHTS_FILE}: cannot write "
                               f"({str(exc).removeprefix('Error while serializing: ')})"
                               ) from None
        for name, data in self.backbone.assets().items():
            write_bytes_atomic(run_dir / name, data)
        write_json_atomic(run_dir / CONFIG_FILE, self.config())
        return run_dir

    @classmethod
    def load(cls, run_dir: str | Path) -> TransferModel:
        """Rebuild a saved model from its run directory; no code is unpickled."""
        run_dir = Path(run_dir)
        cfg_path, w_path = run_dir / CONFIG_FILE, run_dir / WEIGHTS_FILE
        if not run_dir.is_dir():
            raise RunError(f"{run_dir}: no such run directory")
        for p in (cfg_path, w_path):
            if not p.is_file():
                raise RunError(f"{run_dir}: not a transferkit run directory ({p.name} missing)")
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RunError(f"{cfg_path}: unreadable config ({exc})") from None
        if not isinstance(cfg, dict):
            raise RunError(f"{cfg_path}: expected a JSON object")
        version = cfg.get("format_version")
        if version not in READABLE_VERSIONS:
            raise RunError(f"{cfg_path}: run format {version!r} is not supported by "
                           f"transferkit {__version__} (it reads formats "
                           f"{', '.join(map(str, READABLE_VERSIONS))})")
        check_config(cfg, cfg_path)
        try:
            state = load_file(str(w_path))
        except Exception as exc:  # SafetensorError: truncated, corrupt, not safetensors
            raise RunError(f"{w_path}: unreadable weights ({str(exc) or type(exc).__name__}); "
                           f"the file is damaged or incomplete: restore it or fit again"
                           ) from None
        try:
            return cls._from_config(cfg, state, run_dir)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            raise RunError(f"{cfg_path}: does not describe a loadable model ({what})"
                           ) from None

    @classmethod
    def _from_config(cls, cfg: dict[str, Any], state: dict[str, torch.Tensor],
                     run_dir: Path) -> TransferModel:
        bstate = {k.removeprefix("backbone."): v for k, v in state.items()
                  if k.startswith("backbone.")}
        if cfg["format_version"] == 1:  # one head: "head" config, tensors "head.*"
            specs = [{"name": DEFAULT_HEAD, "class_names": cfg["class_names"],
                      "config": cfg["head"], "prefix": "head."}]
        else:
            specs = [dict(h, prefix=f"heads.{h['name']}.") for h in cfg["heads"]]
        heads: dict[str, Head] = {}
        for spec in specs:
            head = Head(spec["config"])
            head.load_state_dict({k.removeprefix(spec["prefix"]): v for k, v in state.items()
                                  if k.startswith(spec["prefix"])}, strict=True)
            heads[spec["name"]] = head
        backbone = backbone_from_spec(cfg["backbone"], bstate, assets_dir=run_dir)
        return cls(backbone, heads, {s["name"]: s["class_names"] for s in specs},
                   info=cfg.get("info"))

    def export_onnx(self, path: str | Path, opset: int = 17) -> Path:
        """Export prepared input -> probabilities to ONNX, with dynamic batch (and token) axes.

        Image models take ``input`` [batch, 3, H, W] (normalised as metadata ``preprocessing``
        says); text models take ``input_ids`` and ``attention_mask`` [batch, tokens] (int64),
        and carry their tokenizer in metadata ``tokenizer`` (a tokenizer.json, padding on).
        A one-head model has the output ``probabilities`` and metadata ``class_names`` (a
        JSON list); a multi-head model has one output per head, named after it, and
        ``class_names`` maps each head to its list.
        """
        import onnx

        from transferkit.backbones.speed import export_onnx_module

        path = Path(path)
        example, axes = self.backbone.export_example()
        multi = len(self.heads) > 1
        module = (nn.Sequential(self.backbone.feature_module(), _Heads(self.heads)).eval()
                  if multi else self.to_module())
        if where(module).type != "cpu":  # traced on the CPU, like the example batch
            module = copy.deepcopy(module).to("cpu")
        outputs = self.head_names if multi else "probabilities"
        with atomic_path(path) as tmp:
            try:
                export_onnx_module(module, example, tmp, output_name=outputs,
                                   dynamic_axes=axes, tensor_name="input", opset=opset)
                proto = onnx.load(str(tmp))
            except OSError as exc:
                raise cannot_write(path, exc) from None
            meta = {"class_names": json.dumps(self.task_classes if multi else self.class_names),
                    **self.backbone.export_metadata(), "transferkit_version": __version__}
            for k, v in meta.items():
                entry = proto.metadata_props.add()
                entry.key, entry.value = k, v
            onnx.save(proto, str(tmp))
        return path


# --- sane bounds on a saved run's config.json: a hand-edited or damaged value (an input
# size of 100000², a negative image size, a NaN mean) is a RunError naming the file and key
#: key -> (lowest, highest) for every number under that key (lists: each element)
BOUNDS: dict[str, tuple[float, float]] = {
    "input_size": (1, 4096), "size": (1, 4096), "image_size": (1, 4096),
    "feature_dim": (1, 1_000_000), "in_dim": (1, 1_000_000), "hidden": (1, 1_000_000),
    "num_classes": (1, 1_000_000), "max_length": (1, 1_000_000), "widths": (1, 65_536),
    "crop_pct": (0.01, 4.0), "std": (1e-12, 1e6), "mean": (-1e6, 1e6),
    "sample_rate": (1, 1_000_000), "window_frames": (1, 1_000_000),
}


def _numbers(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _numbers(v)]
    return [value]


def check_config(cfg: Any, path: str | Path, where: str = "") -> None:
    """Raise a RunError for the first value of ``cfg`` outside :data:`BOUNDS`."""
    if isinstance(cfg, dict):
        for key, value in cfg.items():
            at = f"{where}.{key}" if where else str(key)
            if key in BOUNDS and value is not None:
                lo, hi = BOUNDS[key]
                for x in _numbers(value):
                    ok = (isinstance(x, (int, float)) and not isinstance(x, bool)
                          and math.isfinite(x) and lo <= x <= hi)
                    if not ok:
                        raise RunError(f"{path}: {at} = {value!r} is out of range (each "
                                       f"value {lo:g} to {hi:g}); the file was edited or is "
                                       f"damaged: restore it or fit again")
            else:
                check_config(value, path, at)
    elif isinstance(cfg, list):
        for i, value in enumerate(cfg):
            check_config(value, path, f"{where}[{i}]")
