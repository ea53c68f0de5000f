"""`transferkit fewshot`: few-shot methods on seeded N-way K-shot episodes."""

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
from transferkit.cli._app import progress_bar as _progress
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


@app.command("fewshot")
def fewshot_cmd(
    data: Annotated[Path, typer.Argument(help="Labelled data whose classes are the novel "
                                              "classes (a folder of class folders).")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write metrics and report.")],
    backbone: BackboneOpt = None,
    method: Annotated[str, typer.Option(
        help="Comma-separated: prototypes (of frozen features), prototypes-euclidean, "
             "support-probe, support-finetune; with --base: protonet-trained, maml, fomaml, "
             "metasgd, lstm-optimizer (earlier names protonet, probe, finetune still "
             "work).")] = "prototypes",
    ways: Annotated[int, typer.Option(help="Classes per episode (N).", min=2)] = 5,
    shots: Annotated[int, typer.Option(help="Labelled support items per class (K).", min=1)
                     ] = 1,
    queries: Annotated[int, typer.Option(help="Query items per class.", min=1)] = 15,
    episodes: Annotated[int, typer.Option(help="Episodes to average over.", min=2)] = 600,
    base: Annotated[Path | None, typer.Option(
        help="Labelled base classes to train on first (episodic or meta-learning).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs on --base.", min=1)
                      ] = None,
    finetune_episodes: Annotated[int | None, typer.Option(
        help="Episodes for 'support-finetune' (slower; default --episodes).", min=2)] = None,
    image_size: Annotated[int | None, typer.Option(help="Resize inputs to this many "
                                                        "pixels.", min=8)] = None,
    seed: SeedOpt = 0,
    no_cache: NoCacheOpt = False,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
) -> None:
    """Evaluate few-shot methods on seeded N-way K-shot episodes of DATA.

    Writes metrics.json (mean accuracy, 95% interval, every episode's accuracy, time) and
    report.html (accuracy histogram, an episode shown, the pooled queries' confusion).

    Example: transferkit fewshot novel/ --ways 5 --shots 1 --method prototypes,support-probe --out
    runs/fs
    """
    from transferkit.runs.fewshot import fewshot_run, parse_methods

    try:
        check_device(device, precision)
        parse_methods(method)
        require_paths(("DATA", data), ("--base", base))
        with _progress("features") as progress:
            use_device(device, precision)
            res = fewshot_run(data, out,
                              backbone=backbone_for(backbone, data), methods=method, ways=ways,
                              shots=shots, queries=queries, episodes=episodes, base=base,
                              seed=seed, image_size=image_size, cache=not no_cache,
                              epochs=epochs, finetune_episodes=finetune_episodes, log=log,
                              progress=progress, overwrite=overwrite)
    except USER_ERRORS as exc:
        fail(exc)
    _print_methods(res, f"{ways}-way {shots}-shot, {queries} queries per class")


def _print_methods(res: Any, title: str) -> None:
    """Each method's mean accuracy and 95% interval over the episodes."""
    table = Table(title=escape(title))
    for col in ("method", "accuracy", "95% interval", "episodes", "time (s)"):
        table.add_column(col, justify="right" if col != "method" else "left")
    for name, r in res.results.items():
        table.add_row(escape(name), f"{r.mean:.4f}", f"± {r.ci95:.4f}",
                      str(len(r.accuracies)), f"{r.seconds:.1f}")
    out_console.print(table)
    out_console.print(f"report: {escape(str(res.report_path))}")
