"""Training several tasks on one backbone: the data of each task (its own inputs, labels and
size), the shared trunk, the Trainer's multi-source plan (a batch of every task in every step),
and single-task models trained with the same budget for comparison."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from transferkit.backbones import Backbone
from transferkit.backbones.modality import IMAGE_BACKBONE
from transferkit.data.dataset import Dataset, holdout_split
from transferkit.device import move
from transferkit.errors import DataError
from transferkit.multitask.bnselect import bn_candidates, mean_val, pick_bn
from transferkit.multitask.net import AGGREGATORS, MultiTaskNet
from transferkit.multitask.taskbn import batchnorms
from transferkit.train import MultiSourcePlan, TrainConfig, Trainer
from transferkit.train.plan import mix
from transferkit.train.trunk import Trunk, fresh_backbone


@dataclass
class TaskResult:
    """One model's validation and test accuracy on one task (``val_correct``: whether it got
    each validation item right, in the validation data's order; ``predictions``: its test
    predictions)."""

    val_accuracy: float | None
    test_accuracy: float | None
    predictions: np.ndarray | None = None
    val_correct: np.ndarray | None = None


@dataclass
class MultiTaskFit:
    """The joint model, its history and per-task results, beside the single-task models'."""

    net: MultiTaskNet
    backbone: Backbone
    history: list[dict[str, Any]]
    joint: dict[str, TaskResult]
    single: dict[str, TaskResult] = field(default_factory=dict)
    finetuned: dict[str, TaskResult] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    class_names: dict[str, list[str]] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)
    single_nets: dict[str, MultiTaskNet] = field(default_factory=dict)
    n_freeze: int = 0
    cached: bool = True
    bn: str = "shared"
    bn_scores: dict[str, float | None] = field(default_factory=dict)

    def chosen(self, task: str) -> TaskResult:
        """The result of the model the per-task guard kept for ``task``."""
        return self.single[task] if self.kept.get(task) == "single-task" else self.joint[task]


def _acc(v: float | None) -> str:
    return "n/a (no validation data)" if v is None else f"{v:.3f}"


def guard(joint: Mapping[str, TaskResult], single: Mapping[str, TaskResult]
          ) -> dict[str, tuple[str, str]]:
    """Per task, the model to keep and why, read on validation only. With both models'
    per-item validation results, the joint model is kept only when it beats the single-task
    model by more than one standard error of the paired difference (the one-standard-error
    rule: a joint model no better than validation noise is not worth the risk, and ties keep
    the single-task model); with accuracies alone, when it is not worse. A task without
    validation data or without a single-task model keeps the joint model."""
    out = {}
    for t, j in joint.items():
        s = single.get(t)
        if s is None or s.val_accuracy is None or j.val_accuracy is None:
            out[t] = ("joint", "no validation data or no single-task model to compare")
            continue
        gain, se = _paired_gain(j, s)
        vals = f"joint val {_acc(j.val_accuracy)}, single-task val {_acc(s.val_accuracy)}"
        if se is None:
            out[t] = (("joint", vals) if j.val_accuracy >= s.val_accuracy
                      else ("single-task", vals))
        elif gain > se:
            out[t] = ("joint", f"{vals}: a gain of {gain:.3f} > one standard error {se:.3f}")
        else:
            out[t] = ("single-task", f"{vals}: a gain of {gain:+.3f}, not more than one "
                                     f"standard error ({se:.3f})")
    return out


def _paired_gain(j: TaskResult, s: TaskResult) -> tuple[float, float | None]:
    """The joint model's mean validation gain over the single-task model, and its standard
    error over the paired items (None without per-item results for both)."""
    if j.val_correct is None or s.val_correct is None or len(j.val_correct) != len(
            s.val_correct) or len(j.val_correct) < 2:
        return float(j.val_accuracy or 0) - float(s.val_accuracy or 0), None
    d = j.val_correct.astype(np.float64) - s.val_correct.astype(np.float64)
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))


def check_tasks(tasks: Mapping[str, Dataset]) -> None:
    """Every task named once, labelled, non-empty, of one modality: else an error naming it."""
    if not tasks:
        raise DataError("multi-task learning needs at least one task (--task NAME=DATA)")
    modalities = {t: d.modality for t, d in tasks.items()}
    for t, d in tasks.items():
        if not t or not t.replace("-", "_").replace(".", "_").isidentifier():
            raise DataError(f"task name {t!r}: use letters, digits, '-' or '_'")
        if d.labels is None:
            raise DataError(f"task {t!r} ({d.source}): no labels")
        if len(d) == 0:
            raise DataError(f"task {t!r} ({d.source}): empty")
    if len(set(modalities.values())) > 1:
        raise DataError(f"tasks of different modalities: {modalities}; one backbone reads one")


class MultiTaskLearner:
    """Fits a :class:`MultiTaskNet` on named tasks through the one Trainer."""

    def __init__(self, backbone: str | Backbone = IMAGE_BACKBONE, *,
                 sharing: str = "hard", weighting: str = "equal",
                 branch: Mapping[str, int] | None = None, freeze: int | str | None = None,
                 epochs: int = 10, lr: float | None = None, batch_size: int = 32,
                 holdout: float = 0.2, finetune_epochs: int = 0, baselines: bool = True,
                 image_size: int | None = None, seed: int = 0, cache: Any = True,
                 bn: str = "auto", jacobian: str = "per-task",
                 log: Callable[[str], None] | None = None) -> None:
        self.backbone, self.sharing, self.weighting = backbone, sharing, weighting
        self.branch, self.freeze, self.epochs, self.lr = branch, freeze, epochs, lr
        self.batch_size, self.holdout, self.finetune_epochs = batch_size, holdout, finetune_epochs
        self.baselines, self.image_size, self.seed = baselines, image_size, seed
        self.cache, self.log, self.bn = cache, log, bn
        self.jacobian = jacobian  # how aggregated weightings get the task Jacobian

    def _say(self, line: str) -> None:
        if self.log is not None:
            self.log(line)

    def fit(self, train: Mapping[str, Dataset], test: Mapping[str, Dataset] | None = None
            ) -> MultiTaskFit:
        """Joint training on ``train``'s tasks (each holds out ``holdout`` to pick the
        epoch); single-task models alike; every task scored on ``test`` when given."""
        check_tasks(train)
        if self.sharing == "hierarchical" and self.weighting in AGGREGATORS:
            raise ValueError("gradient aggregation needs every task's loss to reach the "
                             "shared stages; with hierarchical sharing use equal or "
                             "uncertainty weighting")
        tr, val = {}, {}
        for t, ds in train.items():
            tr[t], val[t], note = holdout_split(ds, self.holdout, seed=mix(self.seed, t),
                                                seed_label=self.seed)
            self._say(f"{t}: {note}")
        bb = fresh_backbone(self.backbone, image_size=self.image_size)
        trunk = Trunk(bb, cache=self.cache, log=self.log)
        pretrained = bb.pretrained
        n_freeze = trunk.n_freeze(self.freeze if self.freeze is not None else
                                  (-2 if pretrained else 0), keep_one=True)
        lr = self.lr or (5e-4 if pretrained else 1e-3)
        tests = dict(test or {})
        streams = {**tr, **{f"{t}@val": v for t, v in val.items() if v is not None},
                   **{f"{t}@test": v.align_classes(train[t].class_names)
                      for t, v in tests.items()}}
        view = trunk.views(streams, n_freeze, label="multitask")
        seq_pool = self._split(view, bb)
        dims = self._feature_dims(seq_pool, view.streams[next(iter(tr))])
        classes = {t: len(d.class_names) for t, d in train.items()}
        pristine = copy.deepcopy(seq_pool)  # the starting weights, for the single-task models
        t0 = time.perf_counter()
        spec = {"classes": classes, "dims": dims, "frozen": view.frozen,
                "pretrained": pretrained}
        net, hist, bn_mode, scores = self._joint(seq_pool, pristine, spec, list(tr), view, lr)
        out = MultiTaskFit(net, bb, hist, self._score(net, list(tr), view),
                           class_names={t: list(d.class_names) for t, d in train.items()})
        out.seconds["joint"] = time.perf_counter() - t0
        out.n_freeze, out.cached, out.bn, out.bn_scores = n_freeze, view.cached, bn_mode, scores
        self._say("joint: " + ", ".join(f"{t} val {_acc(r.val_accuracy)}"
                                        for t, r in out.joint.items()))
        if self.finetune_epochs:
            t1 = time.perf_counter()
            for t in tr:
                each = copy.deepcopy(net)
                self._train(each, [t], view, self.finetune_epochs, lr / 10, f"finetune-{t}")
                out.finetuned[t] = self._score(each, [t], view)[t]
            out.seconds["finetune-each"] = time.perf_counter() - t1
        out.backbone = trunk.finish()  # the trained trunk: the hard-sharing model's body
        if self.baselines:
            self._baselines(out, pristine, classes, dims, list(tr), view, lr, pretrained)
        return out

    def _new_net(self, seq_pool: Any, spec: Mapping[str, Any], bn: str) -> MultiTaskNet:
        return MultiTaskNet(*seq_pool, spec["classes"], sharing=self.sharing,
                            weighting=self.weighting, branch=self.branch,
                            feature_dims=spec["dims"], frozen=spec["frozen"],
                            head_lr_scale=10.0 if spec["pretrained"] else 1.0, seed=self.seed,
                            bn=bn, jacobian=self.jacobian)

    def _joint(self, seq_pool: Any, pristine: Any, spec: Mapping[str, Any], tasks: list[str],
               view: Any, lr: float
               ) -> tuple[MultiTaskNet, list[dict[str, Any]], str, dict[str, float | None]]:
        """(net, history, BatchNorm mode, validation score per mode tried): one joint model
        per candidate mode of ``self.bn`` (see :mod:`bnselect`), the validation-best kept on
        the trunk's own modules."""
        modes = bn_candidates(self.bn, pretrained=spec["pretrained"],
                              has_batchnorm=bool(batchnorms(seq_pool[0])))
        if len(modes) == 1:
            net = self._new_net(seq_pool, spec, modes[0])
            return net, self._train(net, tasks, view, self.epochs, lr, "joint"), modes[0], {}
        trials = {}
        for mode in modes:  # each from the starting weights, with the same budget
            trial = self._new_net(copy.deepcopy(pristine), spec, mode)
            hist = self._train(trial, tasks, view, self.epochs, lr, f"joint-bn-{mode}")
            trials[mode] = (trial, hist, mean_val(self._score(trial, tasks, view)))
        scores = {m: v[2] for m, v in trials.items()}
        mode, why = pick_bn(scores, spec["pretrained"])
        self._say(f"bn auto: {why}")
        net = self._new_net(seq_pool, spec, mode)
        net.load_state_dict(trials[mode][0].state_dict())
        net.to(next(trials[mode][0].parameters()).device)
        return net, [{**h, "phase": "joint"} for h in trials[mode][1]], mode, scores

    def _baselines(self, out: MultiTaskFit, pristine: Any, classes: Mapping[str, int],
                   dims: list[int], tasks: list[str], view: Any, lr: float,
                   pretrained: bool) -> None:
        """Single-task models with the same budget, then the per-task guard."""
        t2 = time.perf_counter()
        for t in tasks:
            stages, pool = copy.deepcopy(pristine)
            solo = MultiTaskNet(stages, pool, {t: classes[t]}, sharing="hard",
                                feature_dims=dims, head_lr_scale=10.0 if pretrained else 1.0,
                                seed=self.seed)
            self._train(solo, [t], view, self.epochs, lr, f"single-{t}")
            out.single[t] = self._score(solo, [t], view)[t]
            out.single_nets[t] = solo
        out.seconds["single-task"] = time.perf_counter() - t2
        for t, (keep, why) in guard(out.joint, out.single).items():
            out.kept[t] = keep
            if keep != "joint":
                self._say(f"guard: task {t!r} keeps its single-task model ({why})")

    # --- pieces -------------------------------------------------------------------------------
    @staticmethod
    def _split(view: Any, bb: Backbone) -> tuple[list[nn.Module], nn.Module]:
        """(trainable stage modules, the pooling module after them) of the view's network."""
        mod = view.module
        if isinstance(mod, nn.Sequential) and view.cached and len(mod) >= 2:
            return list(mod)[:-1], mod[-1]
        return [mod], nn.Identity()  # the backbone as one stage (no cut: text, augmentation)

    @staticmethod
    def _feature_dims(seq_pool: tuple[list[nn.Module], nn.Module], data: Any) -> list[int]:
        stages, pool = seq_pool
        x = data.collate([data[0], data[min(1, len(data) - 1)]]) if hasattr(data, "collate") \
            else torch.stack([data[0][0], data[min(1, len(data) - 1)][0]])
        x = x[0] if isinstance(x, tuple) else x
        dims = []
        with torch.no_grad():
            was = [m.training for m in stages]
            for m in stages:
                m.eval()
            dims.append(int(x.mean(dim=(2, 3)).shape[1]) if x.dim() == 4 else int(x.shape[1]))
            for m in stages:
                x = m(x)
                dims.append(int(x.mean(dim=(2, 3)).shape[1]) if x.dim() == 4 else
                            int(x.shape[-1]))
            dims[-1] = int(pool(x).shape[1])
            for m, w in zip(stages, was, strict=True):
                m.train(w)
        return dims

    def _train(self, net: MultiTaskNet, tasks: list[str], view: Any, epochs: int, lr: float,
               label: str) -> list[dict[str, Any]]:
        s = view.streams
        val = {t: s[f"{t}@val"] for t in tasks if f"{t}@val" in s}
        cfg = TrainConfig(epochs=epochs, lr=lr, batch_size=self.batch_size, seed=self.seed,
                          monitor="val_accuracy" if val else "train_loss",
                          precision="32" if self.weighting in AGGREGATORS else "auto")
        res = Trainer(cfg, label=label, log=self.log).fit(
            net, {t: s[t] for t in tasks}, val or None,
            plan=MultiSourcePlan(tasks, mode="sum"))
        return [{"phase": label, **r} for r in res.history]

    @torch.no_grad()
    def _score(self, net: MultiTaskNet, tasks: list[str], view: Any) -> dict[str, TaskResult]:
        net.eval()
        dev = next(net.parameters()).device
        out = {}
        for t in tasks:
            accs: list[float | None] = []
            preds = val_correct = None
            for part in ("val", "test"):
                data = view.streams.get(f"{t}@{part}")
                if data is None:
                    accs.append(None)
                    continue
                coll = getattr(data, "collate", None)
                p = []
                for s in range(0, len(data), 128):
                    items = [data[i] for i in range(s, min(s + 128, len(data)))]
                    x, _ = coll(items) if coll else (torch.stack([a for a, _ in items]), None)
                    p.append(net(move(x, dev), t).argmax(1).cpu().numpy())
                pred = np.concatenate(p)
                labels = np.asarray(data.labels)
                accs.append(float((pred == labels).mean()))
                if part == "test":
                    preds = pred
                else:
                    val_correct = pred == labels
            out[t] = TaskResult(accs[0], accs[1], preds, val_correct)
        return out


def task_backbone(fit: MultiTaskFit, task: str) -> Backbone:
    """A copy of the trained backbone as task ``task`` deploys it: the single-task model's
    stages when the guard kept it, else the joint trunk with the task's own BatchNorm
    statistics (per-task BN) or the shared ones (hard sharing only)."""
    if fit.kept.get(task) != "single-task" and fit.net.task_bn is not None:
        fit.net.task_bn.use(task)  # the backbone's BatchNorms now hold this task's statistics
    bb = copy.deepcopy(fit.backbone)
    bb.invalidate()
    if fit.kept.get(task) == "single-task":
        solo = fit.single_nets[task]
        seq = bb.sequential_stages() if fit.cached else None
        if seq is not None:
            for dst, src in zip(seq[fit.n_freeze:], [*solo.stages, solo.pool], strict=True):
                dst.load_state_dict(src.state_dict())
        else:
            bb.feature_module().load_state_dict(solo.stages[0].state_dict())
    bb.model.to("cpu").eval()  # a deployable copy, saved from the CPU; the policy moves it
    return bb

