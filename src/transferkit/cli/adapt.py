"""`transferkit adapt`: labelled source, unlabelled target -> a model for the target."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from transferkit.cli._app import (
    OVERWRITE_HELP,
    USER_ERRORS,
    DeviceOpt,
    PrecisionOpt,
    app,
    check_device,
    fail,
    log,
    out_console,
    parse_options,
    print_metrics,
    progress_bar,
    use_device,
)


@app.command("adapt")
def adapt_cmd(
    source: Annotated[Path | None, typer.Argument(
        help="Labelled source data: a folder of class folders or a CSV.", show_default=False)
    ] = None,
    target: Annotated[Path | None, typer.Argument(
        help="Unlabelled target data: a folder (class folders are not read) or a CSV.",
        show_default=False)] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run directory to write.")] = None,
    method: Annotated[str, typer.Option(
        help="source-only, dann, coral, mmd, self-train, fixmatch, reweight or tradaboost; "
             "combine with '+', e.g. dann+self-train.")] = "dann",
    backbone: Annotated[str, typer.Option(
        help="Backbone ('transferkit models'); cnn trains a small CNN from scratch.")
    ] = "efficientnet_lite0",
    target_test: Annotated[Path | None, typer.Option(
        help="Labelled target data for the report only (never used to choose anything).")
    ] = None,
    target_labeled: Annotated[Path | None, typer.Option(
        help="A few labelled target items, used for training (semi-supervised).")] = None,
    test: Annotated[Path | None, typer.Option(
        help="Labelled source test data (default: a seeded split of SOURCE).")] = None,
    test_fraction: Annotated[float, typer.Option(
        help="Fraction of SOURCE held out as the source test set when no --test.")] = 0.2,
    select: Annotated[str | None, typer.Option(
        help="How the epoch is chosen without target labels: source-val (default) or im.")
    ] = None,
    freeze: Annotated[str | None, typer.Option(
        help="Leading backbone stages to freeze ('all': the fast frozen-feature path).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (default 30).", min=1)] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size per stream.", min=1)
                          ] = None,
    image_size: Annotated[int | None, typer.Option(help="Resize inputs to this many pixels.",
                                                   min=8)] = None,
    no_baseline: Annotated[bool, typer.Option(
        "--no-baseline", help="Do not train the source-only model beside (no guard).")
    ] = False,
    seed: Annotated[int, typer.Option(help="Random seed.", min=0)] = 0,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Skip unreadable files.")
                        ] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not use the feature cache.")
                        ] = False,
    resume: Annotated[Path | None, typer.Option(help="Continue a killed run in this folder.")
                      ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
    option: Annotated[list[str] | None, typer.Option(
        "--option", "-o", help="Any adapt parameter as KEY=VALUE, e.g. -o align_weight=0.5.")
    ] = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
) -> None:
    """Adapt a model from a labelled SOURCE to an unlabelled TARGET domain.

    Nothing is chosen with target labels: the epoch is picked on held-out source data (or
    the target predictions' information-maximisation score); --target-test is only
    reported, beside the source-only model trained with the same budget.

    Example: transferkit adapt digits/ mnist_unlabelled/ --backbone cnn --image-size 32
    --method dann --target-test mnist_test/ --out runs/da
    """
    from transferkit.backbones.registry import resolve_backbone
    from transferkit.strategies.registry import strategy_spec

    given: dict[str, Any] = {
        k: v for k, v in {"method": method, "select": select, "freeze": freeze,
                          "epochs": epochs, "lr": lr, "batch_size": batch_size,
                          "image_size": image_size,
                          "baseline": False if no_baseline else None}.items()
        if v is not None}
    try:
        check_device(device, precision)
        extra = parse_options(option)
        clash = sorted(set(given) & set(extra) - {"method"})
        if clash:
            raise ValueError(f"--option {clash[0]}=... repeats an option given on its own")
        given.update(extra)
        if resume is None:
            if source is None or target is None or out is None:
                raise ValueError("give SOURCE, TARGET and --out (or --resume RUN)")
            strategy_spec("adapt").check_names(list(given))
            resolve_backbone(backbone, None)
            for what, path in (("SOURCE", source), ("TARGET", target),
                               ("--target-test", target_test),
                               ("--target-labeled", target_labeled), ("--test", test)):
                if path is not None and not Path(path).exists():
                    raise ValueError(f"{path}: no such file or directory ({what})")
        use_device(device, precision)
        from transferkit.runs import fit_run, resume_run

        with progress_bar("features") as progress:
            if resume is not None:
                result = resume_run(resume, progress=progress, log=log)
            else:
                roles = {"target": target}
                if target_test is not None:
                    roles["target-test"] = target_test
                if target_labeled is not None:
                    roles["target-labeled"] = target_labeled
                result = fit_run(source, out, backbone=backbone, strategy="adapt",
                                 test=test, test_fraction=test_fraction, roles=roles,
                                 seed=seed, skip_bad=skip_bad, cache=not no_cache,
                                 progress=progress, log=log, overwrite=overwrite,
                                 title=f"adapt ({method}): {Path(str(source)).name} -> "
                                       f"{Path(str(target)).name}", **given)
    except USER_ERRORS as exc:
        fail(exc)
    if result.evaluation is None:
        return
    for name, ev in result.evaluations.items():
        print_metrics(ev.metrics, f"{'source test' if name == 'test' else name} "
                                  f"({len(ev.y_true)} items)")
    summary = getattr(result.estimator, "summary_", None)
    for t in getattr(result.estimator, "report_tables_", None) or []:
        table = Table(title=escape(t["title"]))
        for c in t["columns"]:
            table.add_column(escape(str(c)))
        for row in t["rows"]:
            table.add_row(*[escape(str(v)) for v in row])
        out_console.print(table)
        if t.get("note"):
            out_console.print(escape(t["note"]))
    if summary and summary.get("flags"):
        out_console.print(escape(f"flagged: {'; '.join(summary['flags'])}"))
    out_console.print(f"run directory: {escape(str(result.run_dir))}\n"
                      f"report: {escape(str(result.evaluation.report_path))}")
