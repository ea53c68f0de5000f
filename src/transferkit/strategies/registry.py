"""The strategy registry: each strategy declares itself once, the rest of the code asks here.

A strategy registers its name, the modalities it accepts, the data roles it needs besides
``train`` (and the ``fit`` keyword each is passed as), whether it needs labels and whether
test classes may be unseen in training. Runs and the CLI read these declarations; there is no
strategy-specific branch anywhere else. ``make_strategy`` refuses an option the strategy does
not take, naming it.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: run-level settings every run hands to a strategy that accepts them (not user options)
CONTEXT = ("backbone", "arch", "seed", "skip_bad", "cache", "progress", "log",
           "checkpoint_dir", "resume")


@dataclass(frozen=True)
class StrategySpec:
    """What a strategy is and what it needs.

    ``inputs`` maps extra data roles (e.g. ``"target"``) to the ``fit`` keyword that receives
    them (e.g. ``"X_target"``); ``required`` lists the roles that must be given.
    ``unseen_classes``: test data may hold classes training never saw (zero-shot).
    """

    name: str
    cls: type
    description: str
    modalities: tuple[str, ...] = ("image", "text")
    inputs: Mapping[str, str] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    needs_labels: bool = True
    unseen_classes: bool = False

    def options(self) -> list[str]:
        """The parameters the strategy takes, run-level settings excluded."""
        return [p for p in self.cls._get_param_names() if p not in CONTEXT]

    def accepts(self, name: str) -> bool:
        """Whether the strategy takes a parameter called ``name``."""
        return name in self.cls._get_param_names()

    @property
    def gradient(self) -> bool:
        """Trained by the shared Trainer (checkpoints, resume)."""
        return self.accepts("checkpoint_dir")


STRATEGIES: dict[str, StrategySpec] = {}


def register_strategy(name: str, *, description: str,
                      modalities: tuple[str, ...] = ("image", "text"),
                      inputs: Mapping[str, str] | None = None, required: tuple[str, ...] = (),
                      needs_labels: bool = True,
                      unseen_classes: bool = False) -> Callable[[type], type]:
    """Class decorator: add the estimator to the registry under ``name``."""

    def add(cls: type) -> type:
        if name in STRATEGIES and STRATEGIES[name].cls is not cls:
            raise ValueError(f"strategy {name!r} is already registered "
                             f"({STRATEGIES[name].cls.__name__})")
        STRATEGIES[name] = StrategySpec(name, cls, description, tuple(modalities),
                                        dict(inputs or {}), tuple(required), needs_labels,
                                        unseen_classes)
        return cls

    return add


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
    unknown = sorted(k for k in given if not spec.accepts(k))
    if unknown:
        flags = ", ".join(f"{k!r} (--{k.replace('_', '-')})" for k in unknown)
        raise ValueError(f"strategy {name!r} takes no option {flags}; its options: "
                         f"{', '.join(spec.options())}")
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
             "roles": ["train", *s.inputs], "options": s.options()}
            for s in STRATEGIES.values()]
