"""The network domain adaptation trains: trunk + head on the labelled source, with an
alignment loss between source and target features and/or self-training on the target.

One TrainModule for every method; they differ only in the loss objects it holds. Its
batches come from the Trainer's paired plan (``source``, ``target``, and optionally
``target_labeled``); its validation reports source-validation accuracy, label-free scores of
the target predictions and, when a labelled target test set is logged, its accuracy (for the
report's oracle column only: never a monitor).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from transferkit.losses import AlignmentLoss, EMATeacher, dann_lambda, pseudo_label_loss
from transferkit.selection import (
    information_maximization,
    prediction_diversity,
    prediction_entropy,
)
from transferkit.train import StepContext, TrainModule
from transferkit.train.trunk import TrunkView, channels_last, stage_param_groups


class _Classifier(nn.Module):
    def __init__(self, trunk: nn.Module, head: nn.Linear, dropout: float) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = head
        self.drop = nn.Dropout(dropout)

    def features(self, x: Any) -> torch.Tensor:
        return self.trunk(channels_last(x))

    def forward(self, x: Any) -> torch.Tensor:
        return self.head(self.drop(self.features(x)))


def _concat(a: Any, b: Any) -> Any:
    """``a`` and ``b`` as one batch when they are tensors of the same item shape, else None."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape[1:] == b.shape[1:]:
        return torch.cat([a, b])
    return None


class AdaptNet(TrainModule):
    """Source cross-entropy (optionally per-sample weighted) + ``align_weight`` x alignment
    loss + ``self_train_weight`` x pseudo-label loss on the target.

    ``diversity_weight`` (with self-training) adds the negative entropy of the batch's mean
    target prediction, so pseudo-labels cannot collapse onto a few classes (SHOT).
    ``ramp``: the alignment and self-training weights follow DANN's schedule
    2/(1+exp(-10p))-1 of the training progress p (an adversarial loss ramps its
    gradient-reversal strength instead). ``self_train``: None, ``"pseudo"`` (the network's
    own confident predictions on the target) or ``"fixmatch"`` (an EMA teacher's confident
    predictions on a weak view train the network on a strong view).
    """

    def __init__(self, view: TrunkView, head: nn.Linear, *, align: AlignmentLoss | None,
                 align_weight: float = 1.0, ramp: bool = True, self_train: str | None = None,
                 threshold: float = 0.9, self_train_weight: float = 1.0,
                 ema_decay: float = 0.99, dropout: float = 0.0, head_lr_scale: float = 1.0,
                 weight_decay: float = 0.01, diversity_weight: float = 0.0) -> None:
        super().__init__()
        self.net = _Classifier(view.module.to(memory_format=torch.channels_last), head,
                               dropout)
        self.stage_modules = list(view.stages)
        self.set_frozen_modules(view.frozen)
        self.align = align
        self.align_weight = float(align_weight)
        self.ramp = ramp
        self.self_train = self_train
        self.threshold = float(threshold)
        self.self_train_weight = float(self_train_weight)
        self.diversity_weight = float(diversity_weight)
        self.head_lr_scale = head_lr_scale
        self.weight_decay = weight_decay
        self.teacher = EMATeacher(self.net, ema_decay) if self_train == "fixmatch" else None

    # --- prediction ------------------------------------------------------------------------
    def forward(self, x: Any) -> torch.Tensor:
        """Class logits."""
        return self.net(x)

    def _ramp(self, ctx: StepContext) -> float:
        return dann_lambda(ctx.progress) if self.ramp else 1.0

    # --- training ----------------------------------------------------------------------------
    def training_step(self, batch: Mapping[str, Any], ctx: StepContext) -> dict[str, Any]:
        """One step on a source batch and a target batch (and labelled target items)."""
        src = batch["source"]
        xs, ys = src[0], src[1]
        ws = src[2] if len(src) > 2 else None
        xt = batch["target"][0]
        strong = None
        if isinstance(xt, (tuple, list)):  # FixMatch: (weak view, strong view)
            xt, strong = xt
        both = _concat(xs, xt)  # one forward: BatchNorm sees both domains, as in DANN
        if both is not None:
            feats = self.net.features(both)
            fs, ft = feats[:len(xs)], feats[len(xs):]
        else:
            fs, ft = self.net.features(xs), self.net.features(xt)
        logits = self.net.head(self.net.drop(fs))
        per = nn.functional.cross_entropy(logits, ys, reduction="none")
        cls = per.mean() if ws is None else (per * ws).sum() / ws.sum().clamp_min(1e-12)
        loss = cls
        out: dict[str, Any] = {"cls_loss": cls.detach()}
        ramp = self._ramp(ctx)
        if self.align is not None:
            adversarial = self.align.adversarial
            a = self.align(fs, ft, ws, coeff=ramp if adversarial else 1.0)
            weight = self.align_weight * (1.0 if adversarial else ramp)
            loss = loss + weight * a["loss"]
            out[self.align.name] = a["loss"].detach()
            out.update({k: v for k, v in a.items() if k != "loss"})
            out["align_weight"] = weight * (ramp if adversarial else 1.0)
        if self.self_train is not None:
            if self.self_train == "fixmatch" and strong is not None:
                assert self.teacher is not None
                teacher = torch.softmax(self.teacher(xt).float(), dim=1)
                student = self.net(strong)
            else:
                student = self.net.head(self.net.drop(ft))
                teacher = torch.softmax(student.detach().float(), dim=1)
            st = pseudo_label_loss(student, teacher, self.threshold)
            weight = self.self_train_weight * ramp
            loss = loss + weight * st["loss"]
            out["pseudo_loss"] = st["loss"].detach()
            out["mask_rate"] = st["mask_rate"]
            if self.diversity_weight:  # keep the target predictions spread over the classes
                mean = torch.softmax(student.float(), dim=1).mean(0)
                neg_entropy = (mean * torch.log(mean.clamp_min(1e-8))).sum()
                loss = loss + self.diversity_weight * ramp * neg_entropy
                out["diversity"] = -neg_entropy.detach()
        if "target_labeled" in batch:
            xl, yl = batch["target_labeled"][0], batch["target_labeled"][1]
            tl = nn.functional.cross_entropy(self.net(xl), yl)
            loss = loss + tl
            out["target_cls_loss"] = tl.detach()
        return {"loss": loss, "logits": logits, "y": ys, **out}

    def on_step_end(self, out: dict[str, Any], ctx: StepContext) -> None:
        """Move the EMA teacher (FixMatch) towards the network."""
        if self.teacher is not None:
            self.teacher.update(self.net)

    def param_groups(self) -> list[dict[str, Any]]:
        """Head (and the alignment loss's own network) at ``head_lr_scale``; the trunk's
        trainable stages at the base lr."""
        head = [*self.net.head.parameters(),
                *(self.align.parameters() if self.align is not None else [])]
        return [{"params": head, "lr_scale": self.head_lr_scale,
                 "weight_decay": self.weight_decay},
                *stage_param_groups(self.net.trunk, self.stage_modules, layer_decay=1.0,
                                    weight_decay=self.weight_decay)]

    # --- validation --------------------------------------------------------------------------
    def validate(self, streams: Mapping[str, Iterable[Any]]) -> dict[str, float]:
        """``source_val_*`` (labelled source validation), ``target_*`` label-free scores of
        the unlabelled target (``target_im``, ``target_entropy``, ``target_diversity``) and
        ``target_test_accuracy`` (a labelled target set: logged, never monitored)."""
        out: dict[str, float] = {}
        for name, batches in streams.items():
            if name == "target":
                probs = np.concatenate([torch.softmax(self(b[0]).float(), 1).cpu().numpy()
                                        for b in batches])
                out.update({"target_im": information_maximization(probs),
                            "target_entropy": prediction_entropy(probs),
                            "target_diversity": prediction_diversity(probs)})
            else:
                m = self.validation_metrics(batches)
                key = "source_val" if name == "source" else name
                out.update({f"{key}_{k.removeprefix('val_')}": v for k, v in m.items()})
        return out
