"""`transferkit adapt`: labelled source, unlabelled target -> a model for the target."""

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
    parse_options,
    print_metrics,
    progress_bar,
    use_device,
)
from transferkit.cli._options import (
    BackboneOpt,
    DeviceOpt,
    NoCacheOpt,
    OptionOpt,
    OutOpt,
    OverwriteOpt,
    Param,
    PrecisionOpt,
    ResumeOpt,
    SeedOpt,
    SkipBadOpt,
    backbone_for,
    require_paths,
    with_signature,
)
from transferkit.cli.fit import strategy_param
from transferkit.strategies.adapt_methods import method_help, select_help
from transferkit.strategies.options import option_doc

_PARAMS = [
    Param("source", Annotated[Path | None, typer.Argument(
        help="Labelled source data: a folder of class folders or a CSV.",
        show_default=False)]),
    Param("target", Annotated[Path | None, typer.Argument(
        help="Unlabelled target data: a folder (class folders are not read) or a CSV.",
        show_default=False)]),
    Param("out", OutOpt),
    Param("method", Annotated[str, typer.Option(help=method_help())], "dann"),
    Param("backbone", BackboneOpt),
    Param("target_test", Annotated[Path | None, typer.Option(
        help="Labelled target data for the report only (never used to choose anything).")]),
    Param("target_labeled", Annotated[Path | None, typer.Option(
        help="A few labelled target items, used for training (semi-supervised).")]),
    Param("test", Annotated[Path | None, typer.Option(
        help="Labelled source test data (default: a seeded split of SOURCE).")]),
    Param("test_fraction", Annotated[float, typer.Option(
        help="Fraction of SOURCE held out as the source test set when no --test.")], 0.2),
    Param("select", Annotated[str | None, typer.Option(help=select_help())]),
    *[strategy_param(option_doc(n), "adapt") for n in ("freeze", "epochs", "lr",
                                                       "batch_size", "image_size")],
    Param("no_baseline", Annotated[bool, typer.Option(
        "--no-baseline", help="Do not train the source-only model beside (no guard).")],
          False),
    Param("seed", SeedOpt, 0), Param("skip_bad", SkipBadOpt, False),
    Param("no_cache", NoCacheOpt, False), Param("resume", ResumeOpt),
    Param("overwrite", OverwriteOpt, False), Param("option", OptionOpt),
    Param("device", DeviceOpt, "auto"), Param("precision", PrecisionOpt, "auto")]


@app.command("adapt")
@with_signature(_PARAMS)
def adapt_cmd(**o: Any) -> None:
    """Adapt a model from a labelled SOURCE to an unlabelled TARGET domain.

    Nothing is chosen with target labels: the epoch is picked on held-out source data (or
    the target predictions' information-maximisation score); --target-test is only
    reported, beside the source-only model trained with the same budget.

    Example: transferkit adapt digits/ mnist_unlabelled/ --backbone cnn --image-size 32
    --method dann --target-test mnist_test/ --out runs/da
    """
    try:
        check_device(o["device"], o["precision"])
        req = None if o["resume"] is not None else _request(o)
        use_device(o["device"], o["precision"])
        from transferkit.runs.adapt import adapt_run
        from transferkit.runs.fit import resume_run

        with progress_bar("features") as progress:
            if req is None:
                result = resume_run(o["resume"], progress=progress, log=log)
            else:
                result = adapt_run(req, o["out"], overwrite=o["overwrite"],
                                   progress=progress, log=log)
    except USER_ERRORS as exc:
        fail(exc)
    _print_result(result)


def _request(o: dict[str, Any]) -> Any:
    """The adaptation run's request, checked by its form (nothing heavy loaded yet)."""
    from transferkit.strategies.registry import strategy_spec

    given = {k: o[k] for k in ("method", "select", "freeze", "epochs", "lr", "batch_size",
                               "image_size") if o[k] is not None}
    if o["no_baseline"]:
        given["baseline"] = False
    extra = parse_options(o["option"])
    clash = sorted(set(given) & set(extra) - {"method"})
    if clash:
        raise ValueError(f"--option {clash[0]}=... repeats an option given on its own")
    given.update(extra)
    if o["source"] is None or o["target"] is None or o["out"] is None:
        raise ValueError("give SOURCE, TARGET and --out (or --resume RUN)")
    strategy_spec("adapt").check_names(list(given))
    if o["backbone"] is not None:
        from transferkit.backbones.registry import resolve_backbone

        resolve_backbone(o["backbone"], None)
    require_paths(("SOURCE", o["source"]), ("TARGET", o["target"]),
                  ("--target-test", o["target_test"]),
                  ("--target-labeled", o["target_labeled"]), ("--test", o["test"]))
    from transferkit.runs.adapt import adapt_request  # the options are sound: load the rest

    return adapt_request(o["source"], o["target"], target_test=o["target_test"],
                         target_labeled=o["target_labeled"], test=o["test"],
                         backbone=backbone_for(o["backbone"], o["source"]),
                         test_fraction=o["test_fraction"], seed=o["seed"],
                         skip_bad=o["skip_bad"], cache=not o["no_cache"], options=given)


def _print_result(result: Any) -> None:
    """The source and target metrics, the adaptation table and where the run is."""
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
