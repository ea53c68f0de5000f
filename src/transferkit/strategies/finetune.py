"""Fine-tuning: a new head on a pretrained (or random) backbone, trained by the one Trainer.

Layer transfer (``freeze``: the first N stages are copied and frozen), a two-stage recipe
(head first, then unfreeze) with layer-wise learning-rate decay, conservative training
(L2-SP towards the pretrained weights; LwF-style feature preservation) and augmentation.

BatchNorm: frozen stages stay in eval mode, so their running statistics are those of the
pretrained network and never change; trainable stages update theirs as usual.

Speed: when the first N stages are frozen and there is no augmentation, their output is the
same every epoch, so it is computed once and the rest is trained on the cached activations
(with every stage frozen that is the feature cache shared with ``probe``).
"""

from __future__ import annotations

import copy
import os
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from torch import nn

from transferkit.backbones import Backbone, FeatureCache, default_cache_dir, load_backbone
from transferkit.backbones.speed import fold_batchnorm, onnx_engine
from transferkit.data.augment import AUGMENT_PRESETS, augment_transform
from transferkit.data.dataset import Dataset
from transferkit.errors import DataError
from transferkit.heads import Head
from transferkit.model import TransferModel
from transferkit.strategies.base import ModelPredictMixin
from transferkit.strategies.contrastive import auto_epochs
from transferkit.strategies.probe import _as_dataset, check_modality
from transferkit.train import ItemData, TensorData, TrainConfig, Trainer, TrainModule
from transferkit.train.trainer import default_collate

PREFIX_CACHE_BYTES = 4 * 2**30  # cached frozen-stage activations, at most


class FineTuneNet(TrainModule):
    """Trunk (trainable stages) -> dropout -> linear head, with the conservative penalties.

    ``trunk`` maps the training inputs (images, or cached activations of the frozen
    stages) to pooled features. ``stage_modules`` lists the trunk's trainable stages from
    input to output; ``frozen`` modules are kept in eval mode.
    """

    def __init__(self, trunk: nn.Module, head: nn.Linear, *, stage_modules: Sequence[nn.Module],
                 frozen: Sequence[nn.Module] = (), dropout: float = 0.0,
                 class_weight: torch.Tensor | None = None, label_smoothing: float = 0.0,
                 l2sp: float = 0.0, lwf: float = 0.0, head_lr_scale: float = 1.0,
                 layer_decay: float = 1.0, weight_decay: float = 0.01) -> None:
        super().__init__()
        self.trunk = trunk.to(memory_format=torch.channels_last)
        self.head = head
        self.drop = nn.Dropout(dropout)
        self.frozen = list(frozen)
        self.stage_modules = list(stage_modules)
        self.register_buffer("class_weight", class_weight if class_weight is not None else
                             torch.ones(head.out_features))
        self.label_smoothing = label_smoothing
        self.l2sp = l2sp
        self.lwf = lwf
        self.head_lr_scale = head_lr_scale
        self.layer_decay = layer_decay
        self.weight_decay = weight_decay
        trainable = [(n, p) for n, p in self.trunk.named_parameters() if p.requires_grad]
        self._anchor_names = [n for n, _ in trainable]
        # L2-SP anchors: the starting (pretrained) weights; not saved with the model
        self._anchors = [p.detach().clone() for _, p in trainable] if l2sp > 0 else []
        self.reference = None
        if lwf > 0:
            ref = copy.deepcopy(trunk).eval()
            for p in ref.parameters():
                p.requires_grad_(False)
            self.reference = [ref]  # a list: kept out of state_dict and the optimiser

    def train(self, mode: bool = True) -> FineTuneNet:
        """Train mode for the trainable parts; frozen stages stay in eval (BN statistics)."""
        super().train(mode)
        for m in self.frozen:
            m.eval()
        return self

    def features(self, x: Any) -> torch.Tensor:
        """Pooled features of a batch (4-d inputs run channels-last: faster convolutions)."""
        return self.trunk(_channels_last(x))

    def forward(self, x: Any) -> torch.Tensor:
        """Class logits."""
        return self.head(self.drop(self.features(x)))

    def training_step(self, batch: Any) -> dict[str, torch.Tensor]:
        """Cross-entropy (class-weighted, smoothed) + L2-SP + feature-preservation penalty."""
        x, y = batch
        feats = self.features(x)
        logits = self.head(self.drop(feats))
        loss = nn.functional.cross_entropy(logits, y, weight=self.class_weight,
                                           label_smoothing=self.label_smoothing)
        if self.l2sp > 0 and self._anchors:
            params = dict(self.trunk.named_parameters())
            sq = sum(((params[n] - a.to(params[n].device)) ** 2).sum()
                     for n, a in zip(self._anchor_names, self._anchors, strict=True))
            loss = loss + 0.5 * self.l2sp * sq
        if self.reference is not None:
            ref_net = self.reference[0].to(feats.device)
            # same mode, module by module (BN on batch statistics where the trunk's is):
            # the penalty is exactly zero before the first step
            for m, r in zip(self.trunk.modules(), ref_net.modules(), strict=True):
                r.training = m.training
            with torch.no_grad():
                ref = ref_net(_channels_last(x))
            loss = loss + self.lwf * nn.functional.mse_loss(feats, ref)
        return {"loss": loss, "logits": logits, "y": y}

    def param_groups(self) -> list[dict[str, Any]]:
        """Head at ``head_lr_scale``; trainable stages decayed by ``layer_decay`` per stage
        down from the top. With L2-SP the trunk gets no decay towards zero."""
        groups: list[dict[str, Any]] = [{"params": list(self.head.parameters()),
                                         "lr_scale": self.head_lr_scale,
                                         "weight_decay": self.weight_decay}]
        seen: set[int] = set()
        trainable = [m for m in self.stage_modules
                     if any(p.requires_grad for p in m.parameters())]
        wd = 0.0 if self.l2sp > 0 else self.weight_decay
        for depth, m in enumerate(reversed(trainable)):
            ps = [p for p in m.parameters() if p.requires_grad and id(p) not in seen]
            seen.update(id(p) for p in ps)
            if ps:
                groups.append({"params": ps, "lr_scale": self.layer_decay ** depth,
                               "weight_decay": wd})
        rest = [p for p in self.trunk.parameters() if p.requires_grad and id(p) not in seen]
        if rest:
            groups.append({"params": rest, "weight_decay": wd})
        return groups


class FineTuneClassifier(ModelPredictMixin, ClassifierMixin, BaseEstimator):
    """Fine-tune a backbone with a new linear head (scikit-learn estimator).

    ``freeze``: number of leading backbone stages kept frozen (0 = full fine-tuning,
    ``"all"`` = feature extraction trained through the same loop). ``head_epochs`` > 0 first
    trains the head alone with the whole body frozen, then unfreezes (two-stage recipe).
    ``lr`` is the backbone's learning rate (default 1e-4 for pretrained weights, 1e-3 for a
    network trained from scratch); ``head_lr`` defaults to 10x ``lr`` on pretrained weights.
    After a head phase the head is already trained: unless ``head_lr`` is given it continues at
    ``lr``, and ``warmup_epochs`` (default: 1 after a head phase, else 0) ramps the unfrozen
    body up (restarting at 10x lr with no warm-up lost 2.4 points in the ladder benchmark).
    ``layer_decay`` < 1 gives each lower stage that factor of the stage above's lr.
    ``l2sp`` = alpha of the L2-SP penalty (alpha/2 * ||w - w_pretrained||^2); ``lwf`` = weight
    of the penalty keeping features close to the pretrained network's (the pretrained copy
    runs in the same train/eval mode, so the penalty starts at zero).
    ``train_bn=False`` keeps every BatchNorm on its pretrained statistics (Keras-style); with
    the default ``True`` the trainable stages' statistics adapt to the new data, which moves
    the features more than any weight penalty can hold back.
    ``augment``: none|light|strong (training data only). ``image_size`` resizes inputs (e.g. 128
    to fine-tune faster on CPU). ``checkpoint_dir`` + ``resume`` continue a killed run.
    ``lora_r`` > 0: parameter-efficient fine-tuning (LoRA via ``peft``): the backbone's weights
    stay frozen, rank-``lora_r`` adapters on ``lora_targets`` (default: the attention query and
    value projections of a text encoder) train with the head, and are merged into the weights
    at the end (the saved model is a plain backbone + head). Text backbones default to
    ``lr`` 5e-5 (1e-3 with LoRA). ``group_by_length`` (text): batches of similar length, so
    less padding; ``False`` batches at random.
    """

    def __init__(self, backbone: str | Backbone = "efficientnet_lite0",
                 freeze: int | str = 0, epochs: int | None = 10, lr: float | None = None,
                 head_lr: float | None = None, optimizer: str = "adamw",
                 schedule: str = "cosine", warmup_epochs: float | None = None, batch_size: int = 32,
                 weight_decay: float = 0.01, layer_decay: float = 1.0, head_epochs: int = 0,
                 l2sp: float = 0.0, lwf: float = 0.0, dropout: float = 0.0,
                 augment: str = "none", image_size: int | None = None,
                 class_weight: str | Sequence[float] | None = None,
                 label_smoothing: float = 0.0, patience: int | None = None,
                 clip_grad_norm: float | None = None, precision: str = "auto",
                 group_by_length: bool = True,
                 train_bn: bool = True, cache_prefix: bool = True,
                 lora_r: int = 0, lora_alpha: float | None = None, lora_dropout: float = 0.1,
                 lora_targets: str | Sequence[str] | None = None,
                 checkpoint_dir: str | Path | None = None,
                 resume: bool = False, seed: int = 0, arch: str | None = None,
                 skip_bad: bool = False, cache: FeatureCache | bool | None = True,
                 progress: Any = None, log: Callable[[str], None] | None = None) -> None:
        self.backbone = backbone
        self.freeze = freeze
        self.epochs = epochs
        self.lr = lr
        self.head_lr = head_lr
        self.optimizer = optimizer
        self.schedule = schedule
        self.warmup_epochs = warmup_epochs
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.layer_decay = layer_decay
        self.head_epochs = head_epochs
        self.l2sp = l2sp
        self.lwf = lwf
        self.dropout = dropout
        self.augment = augment
        self.image_size = image_size
        self.class_weight = class_weight
        self.label_smoothing = label_smoothing
        self.patience = patience
        self.clip_grad_norm = clip_grad_norm
        self.precision = precision
        self.group_by_length = group_by_length
        self.train_bn = train_bn
        self.cache_prefix = cache_prefix
        self.lora_r = lora_r
        self.lora_alpha = lora_alpha
        self.lora_dropout = lora_dropout
        self.lora_targets = lora_targets
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.seed = seed
        self.arch = arch
        self.skip_bad = skip_bad
        self.cache = cache
        self.progress = progress
        self.log = log

    # --- fitting --------------------------------------------------------------------------
    def fit(self, X: Dataset | Sequence[Any], y: Sequence[Any] | None = None,
            X_val: Dataset | Sequence[Any] | None = None,
            y_val: Sequence[Any] | None = None) -> FineTuneClassifier:
        """Train on X (validation data, if given, picks the best epoch and early-stops)."""
        t0 = time.perf_counter()
        self._check_params()
        train = _as_dataset(X, y, "X")
        val = None
        if X_val is not None:
            val = _as_dataset(X_val, y_val, "X_val").align_classes(train.class_names)
        bb = self._fresh_backbone()
        check_modality(bb, train)
        self.classes_ = np.asarray(train.class_names)
        k = len(self.classes_)
        stages = bb.stages()
        n_freeze = self._n_freeze(len(stages))
        if self.lora_r:
            if n_freeze:
                raise ValueError("LoRA trains adapters on every stage; use freeze=0 with lora_r")
            self.lora_params_ = _add_lora(bb, self.lora_r, self.lora_alpha,
                                          self.lora_dropout, self.lora_targets, self.seed)
        self.skipped_: list[str] = []
        train = self._readable(bb, train)
        if val is not None:
            val = self._readable(bb, val)
        pretrained = str(bb.spec().get("type")) != "cnn"
        default_lr = 1e-4 if pretrained else 1e-3
        if bb.modality == "text":
            default_lr = 1e-3 if self.lora_r else 5e-5
        lr = self.lr if self.lr is not None else default_lr
        if n_freeze == len(stages):
            lr = self.lr if self.lr is not None else 1e-3
        head_lr = self.head_lr if self.head_lr is not None else (
            lr * 10 if pretrained and n_freeze < len(stages) else lr)
        head = _new_head(bb.feature_dim, k, self.seed)
        cw = self._class_weights(train.labels, k)
        self.history_: list[dict[str, Any]] = []
        self.train_seconds_ = 0.0
        self.prefix_seconds_ = 0.0
        ck = None if self.checkpoint_dir is None else Path(self.checkpoint_dir)
        two_stage = self.head_epochs > 0 and n_freeze < len(stages)
        warmup = self.warmup_epochs if self.warmup_epochs is not None else (
            1.0 if two_stage else 0.0)
        if two_stage:
            self._train_stage(bb, train, val, head, cw, n_freeze=len(stages),
                              epochs=self.head_epochs, lr=head_lr, head_lr=head_lr,
                              warmup=0.0, ck=None if ck is None else ck / "stage1-head",
                              label="head", augment="none", penalties=False)
            if self.head_lr is None:  # the trained head goes on at the body's top lr
                head_lr = lr
        epochs = (self.epochs if self.epochs is not None
                  else auto_epochs(len(train), self.batch_size, 100, 20))
        self._train_stage(bb, train, val, head, cw, n_freeze=n_freeze, epochs=epochs,
                          lr=lr, head_lr=head_lr, warmup=warmup,
                          ck=None if ck is None else ck / "train",
                          label="fine-tune" if n_freeze < len(stages) else "head",
                          augment=self.augment, penalties=True)
        bb.model.eval()
        if self.lora_r:
            self.trainable_params_ = (sum(p.numel() for p in self.lora_params_)
                                      + sum(p.numel() for p in head.parameters()))
            _merge_lora(bb.model)
            self.lora_params_ = []
        else:
            self.trainable_params_ = (sum(p.numel() for s in stages[n_freeze:]
                                          for p in s.parameters())
                                      + sum(p.numel() for p in head.parameters()))
        bb.invalidate()
        self.backbone_ = bb
        self.n_frozen_stages_ = n_freeze
        self.lr_, self.head_lr_ = lr, head_lr
        self.model_ = TransferModel(bb, _as_head(head), list(self.classes_), info={
            "strategy": "finetune", "freeze": n_freeze, "stages": len(stages),
            "epochs": epochs, "head_epochs": self.head_epochs, "lr": lr,
            "head_lr": head_lr, "augment": self.augment, "l2sp": self.l2sp, "lwf": self.lwf,
            "dropout": self.dropout, "train_bn": self.train_bn, "seed": self.seed,
            "lora_r": self.lora_r,
            "trainable_params": self.trainable_params_})
        self.n_features_in_ = bb.feature_dim
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _train_stage(self, bb: Backbone, train: Dataset, val: Dataset | None, head: nn.Linear,
                     cw: torch.Tensor | None, *, n_freeze: int, epochs: int, lr: float,
                     head_lr: float, warmup: float, ck: Path | None, label: str, augment: str,
                     penalties: bool) -> None:
        stages = bb.stages()
        for i, st in enumerate(stages):
            for p in st.parameters():
                p.requires_grad_(i >= n_freeze)
        if self.lora_r:  # base weights frozen; adapters train (not in a head-only phase)
            for name, p in bb.model.named_parameters():
                p.requires_grad_(penalties and "lora_" in name)
        frozen = [m for st in stages[:n_freeze] for m in st.modules]
        aug = augment_transform(augment)
        seq = bb.sequential_stages() if self.cache_prefix else None
        tp = time.perf_counter()
        cached = None
        all_frozen = n_freeze == len(stages)
        if aug is None and n_freeze > 0 and (seq is not None or all_frozen):
            try:
                cached = self._cached(bb, seq, n_freeze, len(stages), train, val)
            except MemoryError as e:  # too many activations to keep: run the frozen stages
                msg = f"{label}: {e}; the frozen stages run every epoch instead"
                if self.log is not None:
                    self.log(msg)
                else:
                    warnings.warn(msg, stacklevel=2)
        if cached is not None and (seq is not None or all_frozen):
            tr_data, va_data = cached
            trunk: nn.Module = (nn.Identity() if all_frozen or seq is None
                                else nn.Sequential(*seq[n_freeze:]))
            stage_modules = [] if seq is None else seq[n_freeze:-1]
            frozen_in_trunk = []
        else:
            tr_data = ItemData(bb, train.items, train.labels, augment=aug)
            va_data = None if val is None else ItemData(bb, val.items, val.labels)
            trunk = bb.feature_module()
            stage_modules = [nn.ModuleList(st.modules) for st in stages[n_freeze:]]
            frozen_in_trunk = frozen
        self.prefix_seconds_ += time.perf_counter() - tp
        if not self.train_bn:  # BatchNorm statistics stay the pretrained ones everywhere
            norms = [m for m in trunk.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
            frozen_in_trunk = [*frozen_in_trunk, *norms]
        net = FineTuneNet(trunk, head, stage_modules=stage_modules, frozen=frozen_in_trunk,
                          dropout=self.dropout, class_weight=cw,
                          label_smoothing=self.label_smoothing,
                          l2sp=self.l2sp if penalties and n_freeze < len(stages) else 0.0,
                          lwf=self.lwf if penalties and n_freeze < len(stages) else 0.0,
                          head_lr_scale=head_lr / lr, layer_decay=self.layer_decay,
                          weight_decay=self.weight_decay)
        cfg = TrainConfig(epochs=epochs, batch_size=self.batch_size, lr=lr,
                          optimizer=self.optimizer, weight_decay=self.weight_decay,
                          schedule=self.schedule, warmup_epochs=min(warmup, epochs),
                          clip_grad_norm=self.clip_grad_norm, precision=self.precision,
                          patience=self.patience, group_by_length=self.group_by_length,
                          seed=self.seed)
        trainer = Trainer(cfg, checkpoint_dir=ck, resume=self.resume,
                          progress=bool(self.progress) if self.progress is not None else None,
                          label=label, log=self.log)
        res = trainer.fit(net, tr_data, va_data, collate=getattr(tr_data, "collate",
                                                                default_collate), fingerprint={
            "stage": label, "n_freeze": n_freeze, "classes": list(self.classes_),
            "n_train": len(train), "augment": augment, "backbone": bb.spec()})
        net.to("cpu")
        for row in res.history:
            self.history_.append({"phase": label, **row})
        self.train_seconds_ += res.seconds
        self.best_epoch_ = res.best_epoch
        self.samples_per_second_ = res.samples_per_second
        for p in bb.model.parameters():
            p.requires_grad_(True)

    def _cached(self, bb: Backbone, seq: list[nn.Module] | None, n_freeze: int, n_stages: int,
                train: Dataset, val: Dataset | None) -> tuple[TensorData, TensorData | None]:
        """Activations of the frozen leading stages (features, when every stage is frozen)."""
        if n_freeze == n_stages or seq is None:
            def run(ds: Dataset) -> torch.Tensor:
                f = bb.extract(ds, cache=self.cache, progress=self.progress
                               if callable(self.progress) else None)
                return torch.from_numpy(f.features)
        else:
            fast = _prefix_engine(bb, nn.Sequential(*seq[:n_freeze]).eval(), n_freeze)

            def run(ds: Dataset) -> torch.Tensor:
                data = ItemData(bb, ds.items, ds.labels)
                bs = 16
                chunks = [range(s, min(s + bs, len(data))) for s in range(0, len(data), bs)]
                outs: list[torch.Tensor] = []
                total = 0

                def prep(idx: range) -> torch.Tensor:
                    return torch.stack([data[i][0] for i in idx])

                with ThreadPoolExecutor(max_workers=1) as pool, torch.inference_mode():
                    pending = pool.submit(prep, chunks[0])
                    for c in range(len(chunks)):
                        xb = pending.result()
                        if c + 1 < len(chunks):
                            pending = pool.submit(prep, chunks[c + 1])
                        out = fast(xb).contiguous()
                        total += out.numel() * 4
                        if total > PREFIX_CACHE_BYTES:
                            raise MemoryError(
                                "frozen-stage activations exceed the cache budget "
                                f"({PREFIX_CACHE_BYTES / 2**30:.1f} GiB)")
                        outs.append(out.clone())
                return torch.cat(outs)

        return (TensorData(run(train), train.labels),
                None if val is None else TensorData(run(val), val.labels))

    # --- helpers ------------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.augment not in AUGMENT_PRESETS:
            augment_transform(self.augment)  # raises with the list of presets
        for name in ("l2sp", "lwf", "label_smoothing", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.layer_decay <= 1.0:
            raise ValueError(f"layer_decay must be in (0, 1], got {self.layer_decay}")
        if self.head_epochs < 0:
            raise ValueError(f"head_epochs must be >= 0, got {self.head_epochs}")
        if self.lora_r < 0:
            raise ValueError(f"lora_r must be >= 0, got {self.lora_r}")

    def _fresh_backbone(self) -> Backbone:
        if isinstance(self.backbone, Backbone):
            bb = copy.deepcopy(self.backbone)  # never train the caller's object in place
            bb.invalidate()
        else:
            bb = load_backbone(self.backbone, arch=self.arch)
        if self.image_size is not None:
            bb = bb.with_image_size(int(self.image_size))
        if not bb.stages():
            raise ValueError(f"backbone {bb.name!r} has no trainable stages; use the probe "
                             f"strategy for it")
        return bb

    def _n_freeze(self, n: int) -> int:
        f = self.freeze
        if isinstance(f, str):
            if f == "all":
                return n
            if not f.lstrip("-").isdigit():
                raise ValueError(f"--freeze {f!r}: give a number of stages (0..{n}) or 'all'")
            f = int(f)
        if not 0 <= int(f) <= n:
            raise ValueError(f"--freeze {f}: this backbone has {n} stages; choose 0..{n} or "
                             f"'all'")
        return int(f)

    def _readable(self, bb: Backbone, ds: Dataset) -> Dataset:
        """Drop unreadable items when skip_bad is set; otherwise fail naming the first one."""
        from transferkit.data.images import load_image

        check = load_image if bb.modality == "image" else bb.prepare
        bad: list[int] = []
        for i, it in enumerate(ds.items):
            try:
                check(bb.normalize_item(it))
            except DataError as exc:
                if not self.skip_bad:
                    raise DataError(f"{exc} (pass skip_bad=True / --skip-bad to skip "
                                    f"unreadable files)") from None
                bad.append(i)
                self.skipped_.append(str(exc))
        if not bad:
            return ds
        keep = np.setdiff1d(np.arange(len(ds)), bad)
        if len(keep) == 0:
            raise DataError(f"{ds.source}: no readable items")
        return ds.subset(keep)

    def _class_weights(self, labels: np.ndarray, k: int) -> torch.Tensor | None:
        cw = self.class_weight
        if cw is None:
            return None
        if isinstance(cw, str):
            if cw != "balanced":
                raise ValueError(f"class_weight {cw!r}: use 'balanced' or one weight per class")
            counts = np.bincount(labels, minlength=k).astype(np.float64)
            w = np.where(counts > 0, len(labels) / (k * np.maximum(counts, 1)), 0.0)
            return torch.as_tensor(w, dtype=torch.float32)
        w = np.asarray(cw, dtype=np.float32)
        if w.shape != (k,):
            raise ValueError(f"class_weight has {w.size} values; {k} classes need {k}")
        return torch.as_tensor(w)


class LoRAClassifier(FineTuneClassifier):
    """Parameter-efficient fine-tuning: ``FineTuneClassifier`` with ``lora_r=8`` adapters,
    batch size 16 and ``epochs=None`` (about 100 optimiser steps, at most 20 epochs)."""

    def __init__(self, backbone: str | Backbone = "minilm", lora_r: int = 8,
                 epochs: int | None = None, batch_size: int = 16, **params: Any) -> None:
        super().__init__(backbone=backbone, lora_r=lora_r, epochs=epochs,
                         batch_size=batch_size, **params)

    @classmethod
    def _get_param_names(cls) -> list[str]:
        return FineTuneClassifier._get_param_names()


def _prefix_engine(bb: Backbone, prefix: nn.Module,
                   n_freeze: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The fastest exact runner of the frozen leading stages (as for feature extraction):
    ONNX Runtime when available, else BatchNorm folded into the convolutions, channels-last."""
    size = bb.data_config.get("input_size", [3, 224, 224])  # type: ignore[attr-defined]
    example = torch.randn(2, *size, generator=torch.Generator().manual_seed(0))
    if os.environ.get("TRANSFERKIT_ENGINE", "auto") in ("auto", "onnxruntime"):
        name = f"prefix{n_freeze}-{size[-1]}px-{bb.cache_key()}.onnx"
        fast = onnx_engine(prefix, example, default_cache_dir() / "engines" / name)
        if fast is not None:
            return fast
    folded = fold_batchnorm(prefix, example).to(memory_format=torch.channels_last)

    def run(x: torch.Tensor) -> torch.Tensor:
        return folded(x.contiguous(memory_format=torch.channels_last))

    return run


def _add_lora(bb: Backbone, r: int, alpha: float | None, dropout: float,
              targets: str | Sequence[str] | None, seed: int = 0) -> list[nn.Parameter]:
    """Inject LoRA adapters (peft) into the backbone's network in place; their parameters.

    The adapters' random initialisation is drawn from ``seed`` (not the global RNG), so a fit
    is reproducible whatever ran before it in the process.
    """
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise ImportError("LoRA needs the 'peft' package (pip install peft)") from None
    if r < 1:
        raise ValueError(f"lora_r must be >= 1, got {r}")
    tgt = targets if targets is not None else getattr(bb, "lora_targets", None)
    if isinstance(tgt, str):
        tgt = [t.strip() for t in tgt.split(",") if t.strip()]
    if not tgt:
        raise ValueError(f"backbone {bb.name!r}: give lora_targets (module names to adapt, "
                         f"e.g. 'query,value')")
    cfg = LoraConfig(r=int(r), lora_alpha=float(alpha if alpha is not None else 2 * r),
                     lora_dropout=dropout, target_modules=list(tgt), bias="none")
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            inject_adapter_in_model(cfg, bb.model)
    except ValueError as exc:
        raise ValueError(f"LoRA on {bb.name!r}: {exc}") from None
    params = [p for n, p in bb.model.named_parameters() if "lora_" in n]
    if not params:
        raise ValueError(f"LoRA: no module of {bb.name!r} matches {tgt}")
    return params


def _merge_lora(model: nn.Module) -> None:
    """Fold trained LoRA adapters into the base weights and remove them (plain modules again)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, mod in list(model.named_modules()):
        if isinstance(mod, BaseTunerLayer):
            mod.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, mod.get_base_layer())


def _channels_last(x: Any) -> Any:
    if isinstance(x, torch.Tensor) and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def _new_head(d: int, k: int, seed: int) -> nn.Linear:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Linear(d, k)


def _as_head(linear: nn.Linear) -> Head:
    head = Head({"kind": "linear", "in_dim": linear.in_features,
                 "num_classes": linear.out_features})
    head.body.load_state_dict(linear.state_dict())
    return head.eval()
