"""Multi-task learning on real images (the bundled Fashion-MNIST sample: a fine 10-class task
and a coarse 4-group task): hard sharing shares and heads stay private, PCGrad projects as
defined, every sharing pattern trains through the one Trainer, the command saves one model
with a head per task, bad tasks are refused by name."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from transferkit.cli import app
from transferkit.data import Dataset
from transferkit.errors import DataError
from transferkit.model import TransferModel
from transferkit.multitask import MultiTaskLearner, MultiTaskNet, TaskResult
from transferkit.multitask.learner import guard
from transferkit.multitask.net import aggregator
from transferkit.train import StepContext

CTX = StepContext(epoch=0, epochs=1, step=0, steps_per_epoch=1, global_step=0, total_steps=1)


@pytest.fixture(scope="module")
def tasks(fine_coarse: dict[str, Dataset]) -> dict[str, Dataset]:
    return fine_coarse


def _net(sharing: str = "hard", weighting: str = "equal") -> MultiTaskNet:
    torch.manual_seed(0)
    stages = [torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU()),
              torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU())]
    return MultiTaskNet(stages, torch.nn.Identity(), {"a": 3, "b": 2}, sharing=sharing,
                        weighting=weighting, feature_dims=[6, 8, 8])


def test_hard_sharing_shares_the_body_and_keeps_heads_private() -> None:
    net = _net()
    g = torch.Generator().manual_seed(0)
    xa, xb = torch.randn(5, 6, generator=g), torch.randn(4, 6, generator=g)
    la = torch.nn.functional.cross_entropy(net(xa, "a"), torch.tensor([0, 1, 2, 0, 1]))
    lb = torch.nn.functional.cross_entropy(net(xb, "b"), torch.tensor([0, 1, 0, 1]))
    body = list(net.stages.parameters())
    ga = torch.autograd.grad(la, body + list(net.heads["b"].parameters()), allow_unused=True)
    gb = torch.autograd.grad(lb, body + list(net.heads["a"].parameters()), allow_unused=True)
    n = len(body)
    assert all(x is not None and x.abs().sum() > 0 for x in ga[:n] + gb[:n])  # both reach it
    assert all(x is None for x in ga[n:] + gb[n:])  # one task never touches another's head


def _two_task_batch() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return {"a": (torch.randn(5, 6, generator=g), torch.tensor([0, 1, 2, 0, 1])),
            "b": (torch.randn(4, 6, generator=g), torch.tensor([0, 1, 0, 1]))}


@pytest.mark.parametrize("weighting,jacobian", [("upgrad", "per-task"), ("pcgrad", "per-task"),
                                                ("upgrad", "torchjd")])
def test_the_backward_hook_puts_the_aggregated_jacobian_on_the_shared_weights(
        weighting: str, jacobian: str) -> None:
    net = _net(weighting=weighting)
    net.jacobian = jacobian
    batch = _two_task_batch()
    shared = net.shared_parameters()
    rows = []  # the Jacobian of the two task losses w.r.t. the shared weights, by hand
    for t, (x, y) in batch.items():
        loss = torch.nn.functional.cross_entropy(net(x, t), y)
        rows.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, shared)]))
    jac = torch.stack(rows)
    expected = aggregator(weighting)(jac)
    net.zero_grad()
    out = net.training_step(batch, CTX)
    net.backward(out, CTX)
    got = torch.cat([p.grad.flatten() for p in shared])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    if float(rows[0] @ rows[1]) < 0:  # conflicting: the aggregate is not the plain sum
        assert (got - jac.sum(0)).abs().max() > 1e-4
    for t, (x, y) in batch.items():  # each head gets its own task's plain gradient
        loss = torch.nn.functional.cross_entropy(net(x, t), y)
        ref = torch.autograd.grad(loss, list(net.heads[t].parameters()))
        for p, r in zip(net.heads[t].parameters(), ref, strict=True):
            torch.testing.assert_close(p.grad, r, rtol=1e-4, atol=1e-6)


def test_per_task_batchnorm_keeps_separate_running_statistics() -> None:
    torch.manual_seed(0)
    stages = [torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4, momentum=None))]
    stages[0][0].weight.data = torch.eye(4)
    stages[0][0].bias.data.zero_()
    net = MultiTaskNet(stages, torch.nn.Identity(), {"a": 2, "b": 2}, feature_dims=[4, 4],
                       bn="task")
    g = torch.Generator().manual_seed(0)
    xa, xb = torch.randn(64, 4, generator=g) + 5.0, torch.randn(64, 4, generator=g) - 3.0
    net.train()
    net(xa, "a")
    net(xb, "b")
    (ma, _), (mb, _) = net.task_bn.of("a")[0], net.task_bn.of("b")[0]
    torch.testing.assert_close(ma, xa.mean(0))  # momentum None: the exact running mean
    torch.testing.assert_close(mb, xb.mean(0))
    net.eval()  # at test time each task is normalised with its own statistics: mean ~0
    assert net.features("a", xa).mean().abs() < 0.2 and net.features("b", xb).mean().abs() < 0.2
    shared = MultiTaskNet(copy.deepcopy(stages), torch.nn.Identity(), {"a": 2, "b": 2},
                          feature_dims=[4, 4], bn="shared")
    shared.train()
    shared(xa, "a")
    shared(xb, "b")
    shared.eval()  # negative control: one mixed set normalises task a off-centre
    assert shared.features("a", xa).mean() > 2.0
    reloaded = MultiTaskNet(copy.deepcopy(stages), torch.nn.Identity(), {"a": 2, "b": 2},
                            feature_dims=[4, 4], bn="task")
    reloaded.load_state_dict(net.state_dict())
    reloaded.eval()
    torch.testing.assert_close(reloaded(xb, "b"), net(xb, "b"))


def test_frozen_batchnorm_keeps_the_pretrained_statistics() -> None:
    stages = [torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))]
    net = MultiTaskNet(stages, torch.nn.Identity(), {"a": 2}, feature_dims=[4, 4],
                       bn="frozen")
    net.train()
    net(torch.randn(32, 4) + 5.0, "a")
    torch.testing.assert_close(stages[0][1].running_mean, torch.zeros(4))
    with pytest.raises(ValueError, match="bn 'mixed'"):
        MultiTaskNet(stages, torch.nn.Identity(), {"a": 2}, feature_dims=[4, 4], bn="mixed")


def test_guard_keeps_the_single_task_model_when_joint_is_worse_on_validation() -> None:
    joint = {"a": TaskResult(0.60, 0.58), "b": TaskResult(0.90, 0.91), "c": TaskResult(None, 0.5)}
    single = {"a": TaskResult(0.80, 0.79), "b": TaskResult(0.85, 0.95), "c": TaskResult(0.7, 0.7)}
    kept = guard(joint, single)
    assert kept["a"][0] == "single-task" and "joint val 0.600, single-task val 0.800" in kept[
        "a"][1]
    assert kept["b"][0] == "joint"  # selection reads validation, never the test accuracy
    assert kept["c"][0] == "joint"


def test_guard_keeps_the_joint_model_only_beyond_one_standard_error() -> None:
    """With per-item validation results (100 items): a joint model right on 4 more items
    and wrong on 3 more (+0.01; one standard error of the paired difference ~0.027) keeps
    the single-task model, as does a tie; 15 more right and 2 more wrong keeps the joint."""
    rng = np.random.default_rng(0)
    single = rng.random(100) < 0.8

    def changed(wins: int, losses: int) -> np.ndarray:
        out = single.copy()
        out[np.flatnonzero(~single)[:wins]] = True
        out[np.flatnonzero(single)[:losses]] = False
        return out

    def result(correct: np.ndarray) -> TaskResult:
        return TaskResult(float(correct.mean()), None, None, correct)

    kept = guard({"tie": result(single), "small": result(changed(4, 3)),
                  "large": result(changed(15, 2))},
                 {t: result(single) for t in ("tie", "small", "large")})
    assert kept["tie"][0] == "single-task" and kept["small"][0] == "single-task"
    assert "not more than one standard error" in kept["small"][1]
    assert kept["large"][0] == "joint" and "> one standard error" in kept["large"][1]


@pytest.mark.parametrize("sharing,weighting", [("hard", "equal"), ("hard", "upgrad"),
                                               ("shared-private", "uncertainty"),
                                               ("soft", "equal"),
                                               ("hierarchical", "equal")])
def test_patterns_learn_both_tasks_on_real_images(tasks, sharing: str, weighting: str) -> None:
    from transferkit.data.dataset import stratified_split

    train, test = {}, {}
    for t, ds in tasks.items():
        train[t], test[t] = stratified_split(ds, 0.25, 0, what="test")
    learner = MultiTaskLearner("efficientnet_lite0", sharing=sharing, weighting=weighting,
                               branch={"coarse": 1} if sharing == "hierarchical" else None,
                               epochs=2, image_size=64, baselines=sharing == "hard",
                               seed=0, bn="frozen")
    fit = learner.fit(train, test)
    assert fit.joint["fine"].test_accuracy > 0.45  # chance 0.1
    assert fit.joint["coarse"].test_accuracy > 0.7  # chance 0.25 (majority 0.5)
    assert {f"{t}_loss" for t in tasks} <= set(fit.history[-1])
    if sharing == "hard":
        assert set(fit.single) == {"fine", "coarse"}


def _coarse_dir(tasks, root: Path) -> Path:
    """The coarse task as an image folder (one sub-folder per group)."""
    coarse_dir = root / "coarse"
    for item, lab in zip(tasks["coarse"].items, tasks["coarse"].labels, strict=True):
        d = coarse_dir / tasks["coarse"].class_names[lab]
        d.mkdir(parents=True, exist_ok=True)
        (d / Path(item).name).write_bytes(Path(item).read_bytes())
    return coarse_dir


def test_command_saves_one_model_with_a_head_per_task(tasks, sample_dir: Path,
                                                      tmp_path: Path) -> None:
    coarse_dir = _coarse_dir(tasks, tmp_path)
    out = tmp_path / "mt"
    res = CliRunner().invoke(app, ["multitask", "--task", f"fine={sample_dir}", "--task",
                                   f"coarse={coarse_dir}", "--epochs", "1", "--image-size",
                                   "64", "--no-baselines", "--bn", "frozen", "--out", str(out)])
    assert res.exit_code == 0, res.output
    model = TransferModel.load(out)
    assert model.head_names == ["fine", "coarse"]
    all_p = model.predict_all(tasks["fine"].items[:6], cache=False)
    assert all_p["fine"].shape == (6, 10) and all_p["coarse"].shape == (6, 4)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["tasks"]) == {"fine", "coarse"}
    assert (out / "report.html").is_file() and (out / "task-coarse" / "report.html").is_file()
    for args, needle in ((["--task", f"a={sample_dir}", "--task", f"a={sample_dir}"],
                          "used twice"),
                         (["--task", "nonsense"], "expected NAME=DATA"),
                         (["--task", f"a={sample_dir}", "--sharing", "loose"], "--sharing"),
                         (["--task", f"a={sample_dir}", "--bn", "mixed"], "--bn 'mixed'")):
        bad = CliRunner().invoke(app, ["multitask", *args, "--out", str(tmp_path / "x")])
        assert bad.exit_code == 2 and needle in bad.output, bad.output


def test_command_finetunes_a_copy_on_each_task_after_joint_training(tasks, sample_dir: Path,
                                                                    tmp_path: Path) -> None:
    """``--finetune-each 2``: after one joint epoch, a copy trains on each task alone; both
    are scored on the test split and reported beside the joint model they started from."""
    coarse_dir = _coarse_dir(tasks, tmp_path)
    out = tmp_path / "mt"
    res = CliRunner().invoke(app, ["multitask", "--task", f"fine={sample_dir}", "--task",
                                   f"coarse={coarse_dir}", "--epochs", "1", "--finetune-each",
                                   "2", "--image-size", "64", "--no-baselines", "--seed", "0",
                                   "--bn", "frozen", "--out", str(out)])  # auto's old pick
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())["tasks"]
    lines = res.output.splitlines()
    for t, other in (("fine", "coarse"), ("coarse", "fine")):
        rows = [ln for ln in lines if ln.startswith(f"finetune-{t} epoch")]
        assert [r.split(" · ")[0] for r in rows] == [f"finetune-{t} epoch {e}/2" for e in (1, 2)]
        assert all(f"{t}_loss" in r and f"{other}_loss" not in r for r in rows)  # alone
        assert isinstance(m[t]["finetuned_test_accuracy"], float)
    # the copy fine-tuned on the fine task beats the joint model it started from, on the
    # validation data that picked its epoch and on the test split (measured val 0.756 vs
    # 0.711, test 0.673 vs 0.653); the coarse task, near its ceiling, stays there (0.973)
    def val(prefix: str) -> float:
        last = [ln for ln in lines if ln.startswith(prefix)][-1]
        return float(last.split("fine_val_accuracy ")[1].split()[0])

    assert val("finetune-fine epoch") > val("joint epoch")
    assert m["fine"]["finetuned_test_accuracy"] > m["fine"]["joint_test_accuracy"]
    assert m["coarse"]["finetuned_test_accuracy"] > 0.95  # chance 0.25, majority 0.5
    assert "fine-tuned after" in res.output


def test_tasks_of_two_modalities_are_refused(tasks) -> None:
    from transferkit.data import from_texts

    text = from_texts(["a", "b", "c", "d"], ["x", "y", "x", "y"])
    with pytest.raises(DataError, match="different modalities"):
        MultiTaskLearner(epochs=1).fit({"img": tasks["fine"], "txt": text})
    assert np.isfinite(len(tasks["fine"]))


def test_the_guard_keeps_single_task_when_joint_is_made_worse(tasks) -> None:
    from transferkit.data.dataset import stratified_split

    train, test = {}, {}
    for t, ds in tasks.items():
        train[t], test[t] = stratified_split(ds, 0.25, 0, what="test")
    # worse on purpose: in the joint model the fine task reads the trunk's input (branch 0,
    # no trained stage at all) while its single-task model trains the stages
    learner = MultiTaskLearner("efficientnet_lite0", sharing="hierarchical",
                               branch={"fine": 0}, epochs=2, image_size=64, seed=0,
                               bn="frozen")
    logs: list[str] = []
    learner.log = logs.append
    fit = learner.fit(train, test)
    assert fit.single["fine"].val_accuracy > fit.joint["fine"].val_accuracy
    assert fit.kept["fine"] == "single-task"
    assert fit.chosen("fine").test_accuracy == fit.single["fine"].test_accuracy
    assert any("guard: task 'fine' keeps its single-task model" in line for line in logs)


def test_per_task_bn_saves_one_model_that_reloads_to_the_scored_predictions(
        tasks, tmp_path: Path) -> None:
    from transferkit.data.dataset import stratified_split
    from transferkit.runs.multitask import multitask_run

    res = multitask_run(tasks, tmp_path / "mt", backbone="efficientnet_lite0", bn="task",
                        epochs=1, image_size=64, baselines=False, seed=0)
    assert "one model, a head per task" in res.metrics["saved_model"]
    assert not list((tmp_path / "mt").glob("model-*"))  # one artefact, not one per task
    model = TransferModel.load(tmp_path / "mt")
    assert model.head_names == ["fine", "coarse"]
    for t in ("fine", "coarse"):
        _, test = stratified_split(tasks[t], 0.25, 0, what="test")  # the run's own split
        proba = model.predict_all(test.items, cache=False)[t]
        agree = (proba.argmax(1) == res.fit.joint[t].predictions).mean()
        assert agree >= 0.97, (t, agree)


def test_tiny_tasks_without_validation_data_train_and_say_so(tasks) -> None:
    from transferkit.backbones.cnn import ScratchCNN

    tiny = {t: ds.subset(list(range(8))) for t, ds in tasks.items()}  # too few to hold out
    logs: list[str] = []
    fit = MultiTaskLearner(ScratchCNN(32, widths=(8, 16)), epochs=1, seed=0, cache=False,
                           log=logs.append).fit(tiny)
    assert fit.joint["fine"].val_accuracy is None
    assert any(line.startswith("joint: fine val n/a") for line in logs)
    assert fit.kept == {"fine": "joint", "coarse": "joint"}  # no validation: no guard switch


def test_finetune_each_trains_a_copy_per_task_and_leaves_the_joint_model(two_domains,
                                                                         tmp_path: Path) -> None:
    from transferkit.backbones.cnn import ScratchCNN
    from transferkit.runs.multitask import multitask_run

    train, test = two_domains
    res = multitask_run(train, tmp_path / "mt", test=test, bn="task", epochs=3, lr=3e-3,
                        backbone=ScratchCNN(32, widths=(8, 16), seed=0), finetune_epochs=5,
                        baselines=False, seed=0, cache=False)
    fit = res.fit
    assert set(fit.finetuned) == {"clothes", "negative"} and fit.seconds["finetune-each"] > 0
    for t in train:  # each copy kept training on its own task (measured 0.205->0.386,
        # 0.146->0.293 val; 10 classes): the fine-tuning reached it
        assert fit.finetuned[t].val_accuracy > fit.joint[t].val_accuracy + 0.08, t
        m = res.metrics["tasks"][t]
        assert m["finetuned_test_accuracy"] == fit.finetuned[t].test_accuracy
        assert m["joint_test_accuracy"] == fit.joint[t].test_accuracy
    # the joint model itself is untouched by the per-task copies: the saved model answers as
    # the joint model did, not as the fine-tuned copies
    model = TransferModel.load(tmp_path / "mt")
    for t in train:
        pred = model.predict_all(test[t], cache=False)[t].argmax(1)
        assert (pred == fit.joint[t].predictions).mean() >= 0.97, t
        assert (pred == fit.joint[t].predictions).mean() > \
            (fit.finetuned[t].predictions == fit.joint[t].predictions).mean()
