"""`transferkit multitask`: several tasks trained jointly on one backbone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from transferkit.cli._app import (
    USER_ERRORS,
    app,
    check_device,
    fail,
    log,
    out_console,
    use_device,
)
from transferkit.cli._options import (
    BackboneOpt,
    DeviceOpt,
    NoCacheOpt,
    OverwriteOpt,
    PrecisionOpt,
    SeedOpt,
    backbone_for,
    require_paths,
)


@app.command("multitask")
def multitask_cmd(
    task: Annotated[list[str], typer.Option(
        "--task", help="NAME=DATA, repeated: each task's labelled data (its own images, "
                       "classes and size).")],
    out: Annotated[Path, typer.Option("--out", help="Run directory to write.")],
    backbone: BackboneOpt = None,
    sharing: Annotated[str, typer.Option(
        help="hard, hierarchical, shared-private or soft (cross-stitch).")] = "hard",
    weighting: Annotated[str, typer.Option(
        help="equal, uncertainty, or a gradient aggregator: upgrad, pcgrad, mgda, cagrad, "
             "dualproj, imtlg, aligned-mtl, graddrop.")] = "equal",
    branch: Annotated[list[str] | None, typer.Option(
        help="hierarchical: NAME=K, the task reads the output of its first K trainable "
             "stages (repeat per task).")] = None,
    test: Annotated[list[str] | None, typer.Option(
        help="NAME=DATA: a task's test data (default: a seeded split of its data).")] = None,
    freeze: Annotated[str | None, typer.Option(help="Leading backbone stages frozen.")] = None,
    epochs: Annotated[int, typer.Option(help="Epochs (longest task's passes).", min=1)] = 10,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    batch_size: Annotated[int, typer.Option(help="Batch size per task.", min=1)] = 32,
    finetune_each: Annotated[int, typer.Option(
        help="After joint training, fine-tune a copy on each task alone for this many "
             "epochs (0: no).", min=0)] = 0,
    no_baselines: Annotated[bool, typer.Option("--no-baselines", help="Skip the single-task "
                                                                      "models.")] = False,
    bn: Annotated[str, typer.Option(
        "--bn", help="BatchNorm statistics of the shared trunk: shared, task (one set per "
                     "task), frozen (the pretrained ones) or auto (a joint model per mode, the "
                     "best on validation kept; frozen only with a pretrained backbone).")] = "auto",
    image_size: Annotated[int | None, typer.Option(help="Resize inputs.", min=8)] = None,
    seed: SeedOpt = 0,
    no_cache: NoCacheOpt = False,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
) -> None:
    """Train several tasks jointly on one backbone; each task beside its single-task model.

    Example: transferkit multitask --task fine=clothes/ --task coarse=clothes_coarse/
    --sharing hard --weighting upgrad --out runs/mt
    """
    from transferkit.runs.multitask import multitask_run, parse_tasks

    try:
        check_device(device, precision)
        tasks = parse_tasks(task)
        tests = parse_tasks(test or [])
        branches = {k: int(v) for k, v in parse_tasks(branch or []).items()}
        _check_choices(sharing=sharing, weighting=weighting, bn=bn)
        require_paths(*((f"task {name!r}", path) for name, path in {**tasks, **tests}.items()))
        use_device(device, precision)
        res = multitask_run(tasks, out, test=tests,
                            backbone=backbone_for(backbone, None), sharing=sharing,
                            weighting=weighting, branch=branches, freeze=freeze, epochs=epochs,
                            lr=lr, batch_size=batch_size, finetune_epochs=finetune_each,
                            baselines=not no_baselines, image_size=image_size, seed=seed,
                            cache=not no_cache, bn=bn, log=log, overwrite=overwrite)
    except USER_ERRORS as exc:
        fail(exc)
    _print_tasks(res, f"{sharing} sharing, {weighting} weighting")


def _check_choices(**given: str) -> None:
    """Refuse a --sharing, --weighting or --bn value that is not one of the choices."""
    from transferkit.multitask import SHARING, WEIGHTINGS
    from transferkit.multitask.taskbn import BN_CHOICES

    choices = {"sharing": SHARING, "weighting": WEIGHTINGS, "bn": BN_CHOICES}
    for name, value in given.items():
        if value not in choices[name]:
            raise ValueError(f"--{name} {value!r}: choose from {', '.join(choices[name])}")


def _print_tasks(res: Any, title: str) -> None:
    """Each task's joint, single-task and fine-tuned accuracy, and which the guard kept."""
    table = Table(title=escape(title))
    for col in ("task", "joint", "single-task", "fine-tuned after", "kept (guard)"):
        table.add_column(col)
    for t, m in res.metrics["tasks"].items():
        table.add_row(escape(t), *(f"{m[k]:.4f}" if m.get(k) is not None else "n/a" for k in
                                   ("joint_test_accuracy", "single_task_test_accuracy",
                                    "finetuned_test_accuracy")), m.get("kept", "joint"))
    out_console.print(table)
    out_console.print(f"report: {escape(str(res.report_path))}")
