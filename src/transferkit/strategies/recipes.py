"""Fine-tuning recipes: the defaults `--strategy finetune` uses, chosen by measurement.

Each recipe is the set of settings that won on held-out validation data across small real
tasks in ``benchmarks/finetune_defaults.py`` (table in ``benchmarks/results/``). A setting
the user gives explicitly always wins over the recipe; ``describe`` says in one line what was
used and why, so the choice is visible.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RESULTS = "benchmarks/results/finetune_defaults.md"


@dataclass(frozen=True)
class Recipe:
    """Named fine-tuning settings and the reason they are the default."""

    name: str
    settings: dict[str, Any]
    why: str
    advice: dict[str, Any] = field(default_factory=dict)


RECIPES: dict[str, Recipe] = {
    "pretrained-image": Recipe(
        "pretrained-image",
        {"head_init": "random", "freeze": -2, "head_epochs": 3, "lr": 5e-4, "train_bn": False,
         "epochs": 15, "patience": 5, "augment": "none", "fallback": "probe", "refit": True},
        f"best on held-out validation across five small image tasks; training again on all "
        f"the data for the epochs picked never lost to the probe there ({RESULTS})"),
    "pretrained-text": Recipe(
        "pretrained-text",
        {"head_init": "random", "freeze": 0, "head_epochs": 5, "lr": 5e-5, "train_bn": True,
         "epochs": 15, "patience": 5, "augment": "none", "fallback": "probe", "refit": "auto"},
        f"best on held-out validation on WordNet glosses at 8 and 64 per class ({RESULTS})"),
    "pretrained-audio": Recipe(
        "pretrained-audio",
        {"head_init": "random", "freeze": 0, "head_epochs": 3, "lr": 5e-4, "train_bn": True,
         "epochs": 15, "patience": 5, "augment": "none", "fallback": "probe", "refit": "auto"},
        "the image recipe's schedule over every stage of the speech encoder (it has no "
        "BatchNorm to keep); --freeze-last N keeps the top N stages as transferred"),
    "lora": Recipe(
        "lora",
        {"head_init": "random", "freeze": 0, "head_epochs": 0, "lr": 1e-3, "epochs": None,
         "patience": None, "train_bn": True, "augment": "none", "fallback": "none",
         "refit": "auto"},
        "LoRA adapters train from the start at lr 1e-3 for about 100 optimiser steps "
        "(benchmarks/results/text_fewshot.md)"),
    "scratch": Recipe(
        "scratch",
        {"head_init": "random", "freeze": 0, "head_epochs": 0, "lr": 1e-3, "train_bn": True,
         "epochs": 10, "patience": None, "augment": "none", "fallback": "none",
         "refit": "auto"},
        "a network with random weights trains every stage from the start at lr 1e-3"),
}


def pick(modality: str, pretrained: bool, lora: bool) -> Recipe:
    """The recipe for a backbone of ``modality`` (random weights: ``scratch``)."""
    if lora:
        return RECIPES["lora"]
    if not pretrained:
        return RECIPES["scratch"]
    return RECIPES[{"text": "pretrained-text", "audio": "pretrained-audio"}.get(
        modality, "pretrained-image")]


def resolve(recipe: Recipe, given: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The settings to use: the user's where given (not None), else the recipe's; and the
    names the user overrode."""
    out = dict(recipe.settings)
    overridden = [k for k, v in given.items() if v is not None and k in out and out[k] != v]
    out.update({k: v for k, v in given.items() if v is not None})
    return out, overridden


def describe(recipe: Recipe, settings: dict[str, Any], overridden: list[str],
             n_stages: int, n_freeze: int) -> str:
    """One line: the recipe used, what it does, why, and what the user changed."""
    trained = ("every stage" if n_freeze == 0 else "the head only" if n_freeze == n_stages
               else f"the top {n_stages - n_freeze} of {n_stages} stages")
    last = int(settings.get("freeze_last") or 0)
    if last:
        trained = (f"stages {n_freeze + 1}..{n_stages - last} of {n_stages} (the top {last} "
                   f"kept frozen)")
    parts = [f"fine-tuning recipe {recipe.name!r}:"]
    if settings.get("head_init") == "probe" and n_freeze < n_stages:
        parts.append("the head starts as the linear probe, then")
    elif settings.get("head_epochs"):
        parts.append(f"head alone for {settings['head_epochs']} epochs, then")
    parts.append(f"{trained} at lr {settings['lr']:g}")
    if settings.get("train_bn") is False:
        parts.append("with the pretrained BatchNorm statistics")
    epochs = settings.get("epochs")
    parts.append(f"for {'about 100 steps' if epochs is None else f'up to {epochs} epochs'}")
    if settings.get("patience"):
        parts.append(f"(stop after {settings['patience']} without validation gain)")
    if settings.get("augment") not in (None, "none"):
        parts.append(f"with {settings['augment']} augmentation")
    if settings.get("wise") is not None and n_freeze < n_stages:
        weight = settings["wise"]
        parts.append("mixed in weight space with its start (WiSE-FT, "
                     + ("the weight picked on validation)" if weight == "auto"
                        else f"{weight:g} fine-tuned)"))
    if settings.get("fallback") == "probe" and n_freeze < n_stages:
        parts.append("- kept only if it beats the linear probe on the validation data")
    if settings.get("refit") is True:
        parts.append("then trained again on all the data for the epochs picked")
    line = " ".join(parts) + f"; {recipe.why}"
    if overridden:
        line += f"; you set {', '.join(sorted(overridden))}"
    return line
