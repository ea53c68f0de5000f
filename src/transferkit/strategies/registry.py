"""The strategy registry: each strategy declares itself once, the rest of the code asks here.

A registration names the strategy, the estimator (a class, or ``"module:Class"`` imported only
when one is built), the modalities it accepts, the data roles it needs besides ``train`` (and
the ``fit`` keyword each is passed as), whether it needs labels, whether test classes may be
unseen in training, and its options. Runs and the CLI read these declarations; there is no
strategy-specific branch anywhere else. Importing this module is cheap (no PyTorch), so a
command can refuse an unknown strategy or option before loading anything heavy; the
strategy-contract test checks every declaration against its estimator's real parameters.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from transferkit.strategies.train_params import TRAIN_PARAMS

#: run-level settings every run hands to a strategy that accepts them (not user options)
CONTEXT = ("backbone", "arch", "seed", "skip_bad", "cache", "progress", "log",
           "checkpoint_dir", "resume", "device")
#: the run-level settings every strategy takes
BASE_CONTEXT = ("backbone", "arch", "seed", "skip_bad", "cache", "progress", "device")




@dataclass(frozen=True)
class StrategySpec:
    """What a strategy is and what it needs.

    ``options``: the strategy's own parameters (run-level ``CONTEXT`` settings and, for a
    ``gradient`` strategy, the shared ``TRAIN_PARAMS`` come on top). ``inputs`` maps extra
    data roles (e.g. ``"target"``) to the ``fit`` keyword receiving them (``"X_target"``);
    ``required`` lists the roles that must be given; ``unlabelled`` the roles whose labels
    are never read (e.g. the target of domain adaptation, even when it has class folders).
    ``unseen_classes``: test data may hold classes training never saw (zero-shot).
    ``baselines``: per modality, the (strategy, backbone) of the no-transfer baseline the
    negative-transfer guard trains beside it (:data:`DEFAULT_BASELINES` fill the rest).
    """

    name: str
    target: type | str
    description: str
    options: tuple[str, ...]
    gradient: bool = False
    modalities: tuple[str, ...] = ("image", "text", "audio")
    inputs: Mapping[str, str] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    needs_labels: bool = True
    unseen_classes: bool = False
    unlabelled: tuple[str, ...] = ()
    baselines: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    def baseline(self, modality: str) -> tuple[str, str] | None:
        """(strategy, backbone) of the no-transfer baseline on ``modality`` data, or None."""
        return {**DEFAULT_BASELINES, **self.baselines}.get(modality)

    @property
    def cls(self) -> type:
        """The estimator class (imported now if it was registered by name)."""
        if isinstance(self.target, str):
            module, _, attr = self.target.partition(":")
            return getattr(importlib.import_module(module), attr)
        return self.target

    def parameters(self) -> list[str]:
        """Every parameter the estimator takes: its options, the shared training parameters
        (gradient strategies) and the run-level settings it uses."""
        return list(dict.fromkeys([*self.options, *(TRAIN_PARAMS if self.gradient else ()),
                                   *BASE_CONTEXT]))

    def accepts(self, name: str) -> bool:
        """Whether the strategy takes a parameter called ``name``."""
        return name in self.parameters()

    def user_options(self) -> list[str]:
        """The parameters a user sets (run-level settings excluded)."""
        return [p for p in self.parameters() if p not in CONTEXT]

    def check_names(self, names: Sequence[str]) -> None:
        """A ValueError naming any of ``names`` the strategy does not take."""
        unknown = sorted(k for k in names if not self.accepts(k))
        if unknown:
            flags = ", ".join(f"{k!r} (--{k.replace('_', '-')})" for k in unknown)
            raise ValueError(f"strategy {self.name!r} takes no option {flags}; its options: "
                             f"{', '.join(self.user_options())}")


#: the no-transfer baseline of every strategy on text and audio (a strategy may say otherwise)
DEFAULT_BASELINES = {"text": ("probe", "bow"), "audio": ("probe", "logmel")}

STRATEGIES: dict[str, StrategySpec] = {}


def register_strategy(name: str, target: type | str | None = None, *, description: str,
                      options: Sequence[str] | None = None, gradient: bool | None = None,
                      modalities: Sequence[str] = ("image", "text", "audio"),
                      inputs: Mapping[str, str] | None = None, required: Sequence[str] = (),
                      needs_labels: bool = True, unseen_classes: bool = False,
                      unlabelled: Sequence[str] = (),
                      baselines: Mapping[str, tuple[str, str]] | None = None
                      ) -> Callable[[type], type]:
    """Register a strategy; also usable as a class decorator (``target`` omitted).

    With a class, ``options`` and ``gradient`` default to what the class itself says; with a
    ``"module:Class"`` string they must be given (so nothing is imported to register it).
    """

    def add(cls_or_path: type | str) -> type | str:
        opts, grad = options, gradient
        if not isinstance(cls_or_path, str):
            params = list(cls_or_path._get_param_names())
            if grad is None:
                grad = "checkpoint_dir" in params
            if opts is None:
                shared = set(BASE_CONTEXT) | (set(TRAIN_PARAMS) if grad else set())
                opts = [p for p in params if p not in shared]
        if opts is None or grad is None:
            raise ValueError(f"strategy {name!r}: give options= and gradient= when "
                             f"registering by name")
        old = STRATEGIES.get(name)
        if old is not None and old.target != cls_or_path and not (
                isinstance(old.target, str) and not isinstance(cls_or_path, str)
                and old.target.endswith(f":{cls_or_path.__name__}")):
            raise ValueError(f"strategy {name!r} is already registered ({old.target})")
        STRATEGIES[name] = StrategySpec(name, cls_or_path, description, tuple(opts),
                                        bool(grad), tuple(modalities), dict(inputs or {}),
                                        tuple(required), needs_labels, unseen_classes,
                                        tuple(unlabelled), dict(baselines or {}))
        return cls_or_path

    if target is not None:
        add(target)
        return lambda cls: cls
    return add  # type: ignore[return-value]


def strategy_spec(name: str) -> StrategySpec:
    """The registered strategy ``name``; an unknown name is an error with suggestions."""
    if name not in STRATEGIES:
        close = difflib.get_close_matches(name, list(STRATEGIES), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown strategy {name!r}.{hint} Known: {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


def make_strategy(name: str, *, context: Mapping[str, Any] | None = None,
                  **options: Any) -> Any:
    """Build strategy ``name`` with ``options`` (None means "the default"), checked now.

    An option the strategy does not take is an error naming it and listing those it takes.
    ``context`` holds run-level settings (backbone, seed, cache, checkpoints, ...), passed
    to the strategy when it takes them.
    """
    spec = strategy_spec(name)
    given = {k: v for k, v in options.items() if v is not None}
    spec.check_names(list(given))
    ctx = {k: v for k, v in (context or {}).items()
           if spec.accepts(k) and v is not None and k not in given}
    est = spec.cls(**ctx, **given)
    check = getattr(est, "check_params", None)
    if callable(check):
        check()
    return est


def list_strategies() -> list[dict[str, Any]]:
    """Every registered strategy: name, description, modalities, roles and options."""
    return [{"name": s.name, "description": s.description, "modalities": list(s.modalities),
             "roles": ["train", *s.inputs], "options": s.user_options()}
            for s in STRATEGIES.values()]


# --- the built-in strategies (each estimator in its own module, imported when used) ------
_S = "transferkit.strategies."
register_strategy(
    "probe", _S + "probe:ProbeClassifier",
    options=("head", "C", "hidden", "k", "batch_size", "log"),
    gradient=False, baselines={"image": ("probe", "pixels")},
    description="frozen pretrained backbone as a feature extractor (features "
    "cached) + a shallow head: logreg, svm, knn or mlp")
_FINETUNE = ("freeze", "head_lr", "layer_decay", "head_epochs", "l2sp", "lwf", "dropout",
             "augment", "image_size", "class_weight", "label_smoothing", "train_bn",
             "cache_prefix", "lora_r", "lora_alpha", "lora_dropout", "lora_targets", "head_init",
             "fallback", "freeze_last", "holdout", "refit", "wise")
register_strategy(
    "finetune", _S + "finetune:FineTuneClassifier", options=_FINETUNE, gradient=True,
    baselines={"image": ("finetune", "cnn"), "audio": ("finetune", "speech_scratch")},
    description="new linear head, backbone fine-tuned through the shared loop: freeze N "
    "stages, two-stage, layer-wise lr, L2-SP, LwF, augmentation")
register_strategy(
    "lora", _S + "finetune:LoRAClassifier", options=_FINETUNE, gradient=True,
    modalities=("text",), description="LoRA adapters (peft) on the attention projections + a "
    "linear head; merged into the weights when saved")
register_strategy(
    "contrastive", _S + "contrastive:ContrastiveClassifier",
    options=("loss", "temperature", "freeze", "head", "C"), gradient=True,
    description="few-shot, SetFit-style: the encoder is fine-tuned to pull same-class "
    "examples together, then a logistic regression")
register_strategy(
    "zeroshot", "transferkit.zeroshot.text:ZeroShotClassifier", options=("descriptions", "template",
                                                             "temperature"),
    gradient=False, modalities=("text",), needs_labels=False, unseen_classes=True,
    description="no training: each class embedded from its description or name; items get "
    "the most similar class")
register_strategy(
    "adapt", _S + "adapt:DomainAdaptClassifier",
    options=("method", "freeze", "image_size", "align_weight", "ramp", "threshold",
             "self_train_weight", "diversity_weight", "ema_decay", "weak_augment",
             "strong_augment", "augment",
             "dropout", "head_lr", "select", "holdout", "baseline", "guard_drop",
             "boost_rounds"),
    gradient=True, inputs={"target": "X_target", "target-labeled": "X_target_labeled",
                           "target-test": "X_target_test"}, required=("target",),
    unlabelled=("target",),
    description="domain adaptation: labelled source, unlabelled target; dann, coral, mmd, "
    "self-train, fixmatch, reweight, tradaboost; chosen without target labels")
register_strategy(
    "protonet", _S + "protonet:ProtoNetClassifier",
    options=("ways", "shots", "queries", "episodes", "freeze", "image_size", "holdout"),
    gradient=True, baselines={"image": ("finetune", "cnn")},
    description="prototypical network: the backbone trained on N-way K-shot "
    "episodes; the head holds one prototype (mean embedding) per class")
