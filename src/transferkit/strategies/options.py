"""What the strategies' options mean, for the command line and ``transferkit strategies``:
each option's type, help and flag, declared once. Which strategies take an option is the
registry's to say (the help is prefixed with them); an option without an entry here is still
reachable as ``--option KEY=VALUE``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class OptionDoc:
    """One strategy option: parameter ``name``, its value ``type``, ``help``; ``flag`` when
    the command-line name differs from ``--name``; ``min`` its lowest value; ``switch``: a
    flag without value that sets the parameter to ``switch_value``."""

    name: str
    type: Any
    help: str
    flag: str | None = None
    min: float | None = None
    switch: bool = False
    switch_value: Any = None

    @property
    def cli_name(self) -> str:
        """The option as typed on the command line."""
        return self.flag or "--" + self.name.replace("_", "-")


OPTIONS: tuple[OptionDoc, ...] = (
    OptionDoc("head", str, "shallow head: logreg (default), svm, knn or mlp."),
    OptionDoc("C", str, "inverse regularisation strength, or 'auto' (default: chosen on "
                        "--val, else by CV).", flag="--C"),
    OptionDoc("freeze", str, "leading backbone stages to freeze (0 = all trainable, -k = all "
                             "but the last k, 'all' = the head only; finetune's recipe: -2)."),
    OptionDoc("epochs", int, "training epochs (default: finetune's recipe 15 with early "
                             "stopping; adapt 30; lora and contrastive about 100 optimiser "
                             "steps).", min=1),
    OptionDoc("lr", float, "backbone learning rate (finetune's recipe: 5e-4 images, 1e-4 "
                           "text, 1e-3 from scratch)."),
    OptionDoc("freeze_last", int, "also keep the top N stages frozen (the seeds' advice for "
                                  "speech; our speech benchmark measured the opposite, see "
                                  "speech_digits_layers.md).", min=1),
    OptionDoc("head_lr", float, "head learning rate (default 10x --lr on pretrained weights; "
                                "--lr after --head-epochs)."),
    OptionDoc("batch_size", int, "batch size (default 32; lora 16).", min=1),
    OptionDoc("lora_r", int, "adapter rank (default 8).", min=1),
    OptionDoc("lora_targets", str, "comma-separated module names to adapt (default: "
                                   "attention query,value)."),
    OptionDoc("loss", str, "supcon (default) or pairs (SetFit's cosine-similarity loss)."),
    OptionDoc("temperature", float, "softmax temperature."),
    OptionDoc("descriptions", str, "class descriptions, a JSON object or a CSV with "
                                   "label,description (default: the class names)."),
    OptionDoc("template", str, "text around a class name without description, e.g. 'a "
                               "review about {}'."),
    OptionDoc("optimizer", str, "adamw (default) or sgd."),
    OptionDoc("schedule", str, "cosine (default), onecycle or constant."),
    OptionDoc("warmup_epochs", float, "warm-up epochs (default 1 after --head-epochs, else "
                                      "0).", flag="--warmup"),
    OptionDoc("head_epochs", int, "first train the head alone for this many epochs, then "
                                  "unfreeze (recipe: 3 for images).", min=0),
    OptionDoc("layer_decay", float, "lr factor per stage going down (1 = same lr "
                                    "everywhere)."),
    OptionDoc("l2sp", float, "L2-SP strength (pull towards the pretrained weights)."),
    OptionDoc("lwf", float, "weight of the penalty keeping features close to the pretrained "
                            "ones."),
    OptionDoc("dropout", float, "dropout before the head."),
    OptionDoc("augment", str, "augmentation, none, light or strong."),
    OptionDoc("image_size", int, "resize inputs to this many pixels (faster on CPU).", min=8),
    OptionDoc("class_weight", str, "'balanced' to weight the loss against class imbalance."),
    OptionDoc("train_bn", bool, "keep the pretrained BatchNorm statistics in the trained "
                                "stages too (frozen stages always keep theirs).",
              flag="--keep-bn-stats", switch=True, switch_value=False),
    OptionDoc("wise", str, "after fine-tuning keep a weight-space mix with the starting "
                           "model (WiSE-FT): the fine-tuned weight in (0, 1], or 'auto' to "
                           "pick it on the validation data."),
    OptionDoc("patience", int, "stop after this many epochs without validation gain.", min=1),
)

_BY_NAME = {o.name: o for o in OPTIONS}


def option_doc(name: str) -> OptionDoc | None:
    """The declaration of strategy option ``name`` (None: reachable by --option only)."""
    return _BY_NAME.get(name)


def takers(name: str) -> list[str]:
    """The registered strategies that take option ``name``."""
    from transferkit.strategies.registry import STRATEGIES

    return [s.name for s in STRATEGIES.values() if name in s.user_options()]
