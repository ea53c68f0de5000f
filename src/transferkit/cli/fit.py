"""`transferkit fit`: fit a strategy on a dataset and write a run directory.

Its run options are declared here and in :mod:`._options`; its strategy options are built
from the strategy registry and :mod:`transferkit.strategies.options`, so a new strategy
option reaches the command line without touching this file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

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
from transferkit.strategies.options import OPTIONS, OptionDoc, option_doc, takers

_RUN = [
    Param("data", Annotated[Path | None, typer.Argument(
        help="Image folder (DATA/<class>/*, optionally with train/val/test inside), a CSV "
             "(path,label), a text CSV (text,label) or a folder of .txt files per class. "
             "Not needed with --resume.")]),
    Param("out", OutOpt), Param("backbone", BackboneOpt),
    Param("strategy", Annotated[str, typer.Option(
        help="Transfer strategy: probe, finetune, lora, contrastive, zeroshot, adapt, "
             "protonet ('transferkit strategies' lists them).")], "probe"),
    Param("text_column", Annotated[str | None, typer.Option(
        help="Text CSV: the column holding the texts (default: text, sentence, ...).")]),
    Param("label_column", Annotated[str, typer.Option(
        help="CSV: the column holding the labels.")], "label"),
    Param("arch", Annotated[str | None, typer.Option(
        help="timm architecture of a local weights file.")]),
    Param("val", Annotated[Path | None, typer.Option(
        help="Validation data (model selection, early stopping).")]),
    Param("test", Annotated[Path | None, typer.Option(
        help="Test data (default: a seeded stratified split of DATA).")]),
    Param("val_fraction", Annotated[float, typer.Option(
        help="Fraction of the training data held out for validation when no --val is given "
             "(0 = none).")], 0.0),
    Param("test_fraction", Annotated[float | None, typer.Option(
        help="Fraction held out for testing when no --test is given (default 0.25).")]),
    Param("seed", SeedOpt, 0), Param("skip_bad", SkipBadOpt, False),
    Param("no_cache", NoCacheOpt, False), Param("resume", ResumeOpt),
    Param("overwrite", OverwriteOpt, False),
    Param("guard", Annotated[bool, typer.Option(
        "--guard", help="Also train the no-transfer baseline (pixels / a CNN from scratch / "
                        "a bag of words) with the same budget; keep the better on validation "
                        "and say when transfer did worse.")], False),
    Param("option", OptionOpt), Param("device", DeviceOpt, "auto"),
    Param("precision", PrecisionOpt, "auto")]


def strategy_param(o: OptionDoc | None, only: str | None = None) -> Param:
    """A command-line option for strategy option ``o``, its help led by the strategies
    that take it (``only``: for a command of that one strategy)."""
    assert o is not None, "a strategy option the catalogue does not declare"
    who = "" if only is not None else "/".join(takers(o.name))
    kw: dict[str, Any] = {"help": f"{who}: {o.help}" if who else o.help,
                          "rich_help_panel": "Strategy option", "show_default": False}
    if o.switch:
        return Param(o.name, Annotated[bool, typer.Option(o.cli_name, **kw)], False)
    if o.min is not None:
        kw["min"] = o.min
    return Param(o.name, Annotated[o.type | None, typer.Option(o.cli_name, **kw)], None)


_STRATEGY = [strategy_param(o) for o in OPTIONS if takers(o.name)]


@app.command("fit")
@with_signature([*_RUN, *_STRATEGY])
def fit_cmd(**o: Any) -> None:
    """Fit a transfer strategy and write a run directory with model, metrics and report.

    Options under "Strategy option" go to the chosen strategy; one it does not take is an
    error (no option is silently ignored).

    Example: transferkit fit photos/ --strategy probe --out runs/a

    Example: transferkit fit photos/ --strategy finetune --freeze 4 --augment light --out runs/b

    Example (text, few labels): transferkit fit tickets.csv --text-column body --strategy
    contrastive --out runs/t

    Example (after a crash or kill): transferkit fit --resume runs/b
    """
    try:
        check_device(o["device"], o["precision"])
        given = _strategy_values(o)
        exclusive(val=o["val"], val_fraction=o["val_fraction"], test=o["test"],
                  test_fraction=o["test_fraction"])
        req = None if o["resume"] is not None else _request(o, given)
        use_device(o["device"], o["precision"])
        from transferkit.runs.fit import resume_run, run_fit

        with progress_bar("features") as progress:
            if req is None:
                result = resume_run(o["resume"], progress=progress, log=log,
                                    options=_again(o, given))
            else:
                result = run_fit(req, o["out"], overwrite=o["overwrite"],
                                 progress=progress, log=log)
    except USER_ERRORS as exc:
        fail(exc)
    if result.evaluation is None:  # a non-zero rank of a multi-process run
        return
    for name, ev in result.evaluations.items():
        print_metrics(ev.metrics, f"{name} ({len(ev.y_true)} items)")
    out_console.print(f"run directory: {escape(str(result.run_dir))}\n"
                      f"report: {escape(str(result.evaluation.report_path))}")


def _strategy_values(o: dict[str, Any]) -> dict[str, Any]:
    """The strategy options given, by parameter name (``--option`` pairs included)."""
    docs = [option_doc(p.name) for p in _STRATEGY]
    given = {d.name: d.switch_value if d.switch else o[d.name] for d in docs
             if d is not None and o[d.name] is not None and o[d.name] is not False}
    extra = parse_options(o["option"])
    clash = sorted(set(given) & set(extra))
    if clash:
        raise ValueError(f"--option {clash[0]}=... repeats an option given on its own")
    return {**given, **extra}


def _request(o: dict[str, Any], given: dict[str, Any]) -> Any:
    """The fit request of a new run, checked by its form (nothing heavy loaded yet)."""
    from transferkit.strategies.registry import strategy_spec

    if o["data"] is None or o["out"] is None:
        raise ValueError("give DATA and --out (or --resume RUN)")
    strategy_spec(o["strategy"]).check_names(list(given))
    if o["backbone"] is not None:
        from transferkit.backbones.registry import resolve_backbone

        resolve_backbone(o["backbone"], o["arch"])
    require_paths(("DATA", o["data"]), ("--val", o["val"]), ("--test", o["test"]))
    from transferkit.runs.request import FitRequest  # the options are sound: load the rest

    return FitRequest(
        o["data"], strategy=o["strategy"], arch=o["arch"], val=o["val"], test=o["test"],
        backbone=backbone_for(o["backbone"], o["data"], o["text_column"]), seed=o["seed"],
        skip_bad=o["skip_bad"], val_fraction=o["val_fraction"],
        test_fraction=0.25 if o["test_fraction"] is None else o["test_fraction"],
        cache=not o["no_cache"], text_column=o["text_column"],
        label_column=o["label_column"], guard=o["guard"], options=given)


def _again(o: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The options given again with --resume (each must agree with the run's own)."""
    if o["out"] is not None and o["out"].resolve() != o["resume"].resolve():
        raise ValueError(f"--out {o['out']} with --resume {o['resume']}: a resumed run "
                         f"finishes in its own directory; leave --out out")
    return {"data": o["data"], "backbone": o["backbone"], "arch": o["arch"],
            "val": o["val"], "test": o["test"], "text_column": o["text_column"],
            "strategy": None if o["strategy"] == "probe" else o["strategy"],
            "seed": o["seed"] or None, "test_fraction": o["test_fraction"],
            "val_fraction": o["val_fraction"] or None, "skip_bad": o["skip_bad"] or None,
            "cache": False if o["no_cache"] else None, "guard": o["guard"] or None,
            "label_column": None if o["label_column"] == "label" else o["label_column"],
            **given}


def exclusive(*, val: Path | None, val_fraction: float, test: Path | None,
              test_fraction: float | None) -> None:
    """Refuse options that exclude each other (none is silently ignored)."""
    if val is not None and val_fraction:
        raise ValueError("--val and --val-fraction exclude each other: --val gives the "
                         "validation data, --val-fraction holds it out of DATA; give one")
    if test is not None and test_fraction is not None:
        raise ValueError("--test and --test-fraction exclude each other: --test gives the "
                         "test data, --test-fraction holds it out of DATA; give one")
