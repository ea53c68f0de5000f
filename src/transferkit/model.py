"""TransferModel: a fitted backbone + head with class names; save, load, predict, export."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from transferkit import __version__
from transferkit._io import write_json_atomic
from transferkit.backbones import Backbone, FeatureCache, Features, backbone_from_spec
from transferkit.data.dataset import Dataset
from transferkit.errors import RunError
from transferkit.heads import Head

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


class TransferModel:
    """A backbone and a head that turn items into class probabilities."""

    def __init__(self, backbone: Backbone, head: Head, class_names: Sequence[str],
                 info: dict[str, Any] | None = None) -> None:
        self.backbone = backbone
        self.head = head.eval()
        self.class_names = list(class_names)
        self.info = dict(info or {})

    # --- inference ----------------------------------------------------------------------
    def features(self, data: Dataset | Sequence[Any], *, cache: FeatureCache | bool | None = None,
                 skip_bad: bool = False, batch_size: int | None = None,
                 progress: Any = None) -> Features:
        """Backbone features for items (see Backbone.extract)."""
        return self.backbone.extract(data, cache=cache, skip_bad=skip_bad,
                                     batch_size=batch_size, progress=progress)

    def proba_from_features(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities from already-extracted features."""
        with torch.inference_mode():
            return self.head(torch.as_tensor(features, dtype=torch.float32)).numpy()

    def predict_proba(self, data: Dataset | Sequence[Any], **kw: Any) -> np.ndarray:
        """Class probabilities [n, K] for each item (every item must be readable)."""
        return self.proba_from_features(self.features(data, **kw).features)

    def predict(self, data: Dataset | Sequence[Any], **kw: Any) -> list[str]:
        """Predicted class name for each item."""
        return [self.class_names[i] for i in self.predict_proba(data, **kw).argmax(axis=1)]

    def to_module(self) -> nn.Module:
        """One nn.Module: prepared input batch -> class probabilities."""
        return nn.Sequential(self.backbone.feature_module(), self.head).eval()

    # --- persistence --------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The JSON config that, with the weights file, rebuilds this model offline."""
        return {"format_version": FORMAT_VERSION, "transferkit_version": __version__,
                "task": "classification", "modality": self.backbone.modality,
                "class_names": self.class_names, "backbone": self.backbone.spec(),
                "head": self.head.config, "info": self.info}

    def save(self, run_dir: str | Path) -> Path:
        """Write config.json and model.safetensors into ``run_dir`` (each atomically)."""
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        tensors = {f"backbone.{k}": v.detach().contiguous().clone()
                   for k, v in self.backbone.feature_state_dict().items()}
        tensors.update({f"head.{k}": v.detach().contiguous().clone()
                        for k, v in self.head.state_dict().items()})
        fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=".model-", suffix=".tmp")
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata={"format": "transferkit", "version": __version__})
            os.replace(tmp, run_dir / WEIGHTS_FILE)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        for name, data in self.backbone.assets().items():
            fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=f".{name}-", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, run_dir / name)
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
        if cfg.get("format_version") != FORMAT_VERSION:
            raise RunError(f"{cfg_path}: run format {cfg.get('format_version')!r} is not "
                           f"supported by transferkit {__version__}")
        state = load_file(str(w_path))
        bstate = {k.removeprefix("backbone."): v for k, v in state.items()
                  if k.startswith("backbone.")}
        hstate = {k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.")}
        backbone = backbone_from_spec(cfg["backbone"], bstate, assets_dir=run_dir)
        head = Head(cfg["head"])
        head.load_state_dict(hstate, strict=True)
        return cls(backbone, head, cfg["class_names"], info=cfg.get("info"))

    def export_onnx(self, path: str | Path, opset: int = 17) -> Path:
        """Export prepared input -> probabilities to ONNX, with dynamic batch (and token) axes.

        Image models take ``input`` [batch, 3, H, W] (normalised as metadata ``preprocessing``
        says); text models take ``input_ids`` and ``attention_mask`` [batch, tokens] (int64),
        and carry their tokenizer in metadata ``tokenizer`` (a tokenizer.json, padding on).
        Metadata ``class_names`` orders the probabilities.
        """
        import onnx

        from transferkit.backbones.speed import export_onnx_module

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        example, axes = self.backbone.export_example()
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            export_onnx_module(self.to_module(), example, tmp, output_name="probabilities",
                               dynamic_axes=axes, tensor_name="input", opset=opset)
            proto = onnx.load(str(tmp))
            meta = {"class_names": json.dumps(self.class_names),
                    **self.backbone.export_metadata(), "transferkit_version": __version__}
            for k, v in meta.items():
                entry = proto.metadata_props.add()
                entry.key, entry.value = k, v
            onnx.save(proto, str(tmp))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

