"""The domain-adaptation methods, each declared once: what it is, which paths it runs on
(the network path, which trains backbone stages; the frozen-feature path, which works on
extracted features), how its loss or feature transform is built, and what it needs. The
``--method`` help, ``METHODS``, the parsing of combinations such as ``dann+self-train`` and
the refusals are generated from these declarations; the method-contract test runs every
declared method on both paths. Adding an alignment loss is one file (the loss) and one
``register_method`` line below. Importing this module is cheap (no PyTorch).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: what a method does: stands alone (baseline, boosting), aligns the feature distributions,
#: pseudo-labels the target, or reweights the source
KINDS = ("alone", "align", "self_train", "reweight")


@dataclass(frozen=True)
class AdaptMethod:
    """A domain-adaptation method.

    ``loss``: ``"module:Class"`` of its alignment loss (built with the feature width when
    ``loss_takes_dim``) for the network path; ``transform``: ``"module:function"`` mapping
    (source features, target features) to new source features on the frozen-feature path.
    ``network`` / ``features``: the paths it runs on (a method is refused, by name, on a
    path it does not declare). ``needs_target_labels``: it needs ``--target-labeled``;
    ``images_only``: it needs images (augmented views). ``select``: how its epoch is chosen
    when the user does not say (a key of :data:`SELECT`); a combination uses ``im`` when any
    part declares it.
    """

    name: str
    kind: str
    description: str
    network: bool = True
    features: bool = False
    loss: str | None = None
    loss_takes_dim: bool = False
    transform: str | None = None
    needs_target_labels: bool = False
    images_only: bool = False
    select: str = "source-val"

    def build_loss(self, feature_dim: int) -> Any:
        """The method's alignment loss (a torch module) for features of ``feature_dim``."""
        if self.loss is None:
            raise ValueError(f"method {self.name!r} has no alignment loss")
        cls = _load(self.loss)
        return cls(feature_dim) if self.loss_takes_dim else cls()

    def feature_transform(self) -> Callable[[Any, Any], Any] | None:
        """The frozen-feature path's source-feature transform (None: it has none)."""
        return None if self.transform is None else _load(self.transform)


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


ADAPT_METHODS: dict[str, AdaptMethod] = {}

#: label-free epoch selection: the per-epoch history column it maximises
SELECT = {"source-val": ("source_val_accuracy", "max"), "im": ("target_im", "max")}


def register_method(method: AdaptMethod) -> AdaptMethod:
    """Declare a method (its name must be new, its kind one of :data:`KINDS`)."""
    if method.name in ADAPT_METHODS:
        raise ValueError(f"adaptation method {method.name!r} is already registered")
    if method.select not in SELECT:
        raise ValueError(f"method {method.name!r}: select {method.select!r} is not one of "
                         f"{tuple(SELECT)}")
    if method.kind not in KINDS:
        raise ValueError(f"method {method.name!r}: kind {method.kind!r} is not one of {KINDS}")
    if method.kind == "align" and method.network and method.loss is None:
        raise ValueError(f"method {method.name!r}: an alignment method on the network path "
                         f"needs its loss")
    if method.kind == "align" and method.features and method.transform is None:
        raise ValueError(f"method {method.name!r}: an alignment method on the frozen-feature "
                         f"path needs its feature transform")
    ADAPT_METHODS[method.name] = method
    return method


_L = "transferkit.losses."
register_method(AdaptMethod("source-only", "alone", "the source alone (the baseline every "
                            "method is shown beside)", features=True))
register_method(AdaptMethod("dann", "align", "domain-adversarial training (a domain "
                            "classifier behind gradient reversal)",
                            loss=_L + "alignment:DomainAdversarialLoss", loss_takes_dim=True))
register_method(AdaptMethod("coral", "align", "Deep CORAL (covariances aligned); frozen "
                            "features: classic CORAL re-colouring", features=True,
                            loss=_L + "alignment:CoralLoss",
                            transform="transferkit.strategies.adapt_features:coral_transform"))
register_method(AdaptMethod("mmd", "align", "multi-kernel maximum mean discrepancy (DAN)",
                            loss=_L + "alignment:MMDLoss"))
register_method(AdaptMethod("cmd", "align", "central moment discrepancy (means and central "
                            "moments 2-5 matched)", loss=_L + "cmd:CMDLoss"))
# The methods that train on the target's own predictions pick their epoch on the target's
# information-maximisation score: source validation cannot see those pseudo-labels going
# wrong. Decided on a development shift no other benchmark reports
# (benchmarks/results/adapt_select_dev.md, IM minus source-val choice, points): self-train
# +37.0 (2 seeds), +4.4 / -1.2 with 1 / 5 labelled target items per class; fixmatch +0.6 /
# +2.7. The alignment methods keep source validation: there the two differed by -4.0 to +5.1.
register_method(AdaptMethod("self-train", "self_train", "confident pseudo-labels on the "
                            "target", select="im"))
register_method(AdaptMethod("fixmatch", "self_train", "an EMA teacher's confident labels on a "
                            "weak view train a strong view", images_only=True, select="im"))
register_method(AdaptMethod("reweight", "reweight", "source items weighted by how "
                            "target-like they are (density ratio)", features=True))
register_method(AdaptMethod("tradaboost", "alone", "boosting on frozen features with a few "
                            "labelled target items", network=False, features=True,
                            needs_target_labels=True))

#: every method name, in declaration order
METHODS = tuple(ADAPT_METHODS)


def select_help() -> str:
    """The ``--select`` help, from the declarations."""
    im = [m.name for m in ADAPT_METHODS.values() if m.select == "im"]
    return (f"How the epoch is chosen without target labels: {' or '.join(SELECT)} (default: "
            f"the method's own: im for {', '.join(im)} and any combination with one, "
            f"source-val otherwise).")


def method_help() -> str:
    """The ``--method`` help, from the declarations."""
    aligns = "/".join(m.name for m in ADAPT_METHODS.values() if m.kind == "align")
    return (f"{', '.join(METHODS)}; combine at most one of {aligns} with self-train or "
            f"fixmatch and/or reweight using '+', e.g. dann+self-train.")


def parse_method(method: str) -> dict[str, Any]:
    """``"dann+self-train"`` -> {"align": "dann", "self_train": "pseudo", "reweight": False,
    "select": "im", ...}: the parts of a (combined) method, checked, and its declared epoch
    selection."""
    parts = [p.strip() for p in str(method).split("+") if p.strip()]
    unknown = [p for p in parts if p not in ADAPT_METHODS]
    if unknown or not parts:
        raise ValueError(f"--method {method!r}: unknown {', '.join(map(repr, unknown)) or ''}; "
                         f"choose from {', '.join(METHODS)}, combined with '+' (e.g. "
                         f"dann+self-train)")
    by_kind = {k: [p for p in parts if ADAPT_METHODS[p].kind == k] for k in KINDS}
    if len(by_kind["align"]) > 1 or len(by_kind["self_train"]) > 1:
        aligns = "/".join(m.name for m in ADAPT_METHODS.values() if m.kind == "align")
        raise ValueError(f"--method {method!r}: combine at most one of {aligns} with at most "
                         f"one of self-train/fixmatch")
    if by_kind["alone"] and len(parts) > 1:
        raise ValueError(f"--method {method!r}: {by_kind['alone'][0]} stands alone")
    selfs = by_kind["self_train"]
    return {"align": by_kind["align"][0] if by_kind["align"] else None,
            "self_train": {"self-train": "pseudo", "fixmatch": "fixmatch"}[selfs[0]]
            if selfs else None, "reweight": "reweight" in parts,
            "tradaboost": "tradaboost" in parts, "source_only": parts == ["source-only"],
            "select": "im" if any(ADAPT_METHODS[p].select == "im" for p in parts)
            else "source-val", "parts": parts}


def check_path(method: str, features: bool) -> None:
    """A ValueError naming the parts of ``method`` that do not run on the frozen-feature
    path (``features``) or the network path."""
    parts = parse_method(method)["parts"]
    off = [p for p in parts if not (ADAPT_METHODS[p].features if features
                                    else ADAPT_METHODS[p].network)]
    if not off:
        return
    on = [m.name for m in ADAPT_METHODS.values() if (m.features if features else m.network)]
    if features:
        raise ValueError(f"--method {method}: {', '.join(off)} needs trainable backbone "
                         f"stages (the network path); with every stage frozen use "
                         f"{', '.join(on)}")
    raise ValueError(f"--method {method}: {', '.join(off)} runs on frozen features only "
                     f"(--freeze all)")
