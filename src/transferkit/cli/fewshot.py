"""`transferkit fewshot`: few-shot methods on seeded N-way K-shot episodes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
    use_device,
)
from transferkit.cli._app import progress_bar as _progress


@app.command("fewshot")
def fewshot_cmd(
    data: Annotated[Path, typer.Argument(help="Labelled data whose classes are the novel "
                                              "classes (a folder of class folders).")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write metrics and report.")],
    backbone: Annotated[str, typer.Option(help="Backbone ('transferkit models').")
                        ] = "efficientnet_lite0",
    method: Annotated[str, typer.Option(
        help="Comma-separated: protonet, protonet-euclidean, probe, finetune; with --base: "
             "protonet-trained, maml, fomaml, metasgd, lstm-optimizer.")] = "protonet",
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
        help="Episodes for 'finetune' (slower; default --episodes).", min=2)] = None,
    image_size: Annotated[int | None, typer.Option(help="Resize inputs to this many "
                                                        "pixels.", min=8)] = None,
    seed: Annotated[int, typer.Option(help="Random seed of the episodes.", min=0)] = 0,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not use the feature cache.")
                        ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
) -> None:
    """Evaluate few-shot methods on seeded N-way K-shot episodes of DATA.

    Writes metrics.json (mean accuracy, 95% interval, every episode's accuracy, time) and
    report.html (accuracy histogram, an episode shown, the pooled queries' confusion).

    Example: transferkit fewshot novel/ --ways 5 --shots 1 --method protonet,probe --out
    runs/fs
    """
    from transferkit.fewshot_run import fewshot_run, parse_methods

    try:
        check_device(device, precision)
        parse_methods(method)
        for what, path in (("DATA", data), ("--base", base)):
            if path is not None and not Path(path).exists():
                raise ValueError(f"{path}: no such file or directory ({what})")
        with _progress("features") as progress:
            use_device(device, precision)
            res = fewshot_run(data, out, backbone=backbone, methods=method, ways=ways,
                              shots=shots, queries=queries, episodes=episodes, base=base,
                              seed=seed, image_size=image_size, cache=not no_cache,
                              epochs=epochs, finetune_episodes=finetune_episodes, log=log,
                              progress=progress, overwrite=overwrite)
    except USER_ERRORS as exc:
        fail(exc)
    table = Table(title=escape(f"{ways}-way {shots}-shot, {queries} queries per class"))
    for col in ("method", "accuracy", "95% interval", "episodes", "time (s)"):
        table.add_column(col, justify="right" if col != "method" else "left")
    for name, r in res.results.items():
        table.add_row(escape(name), f"{r.mean:.4f}", f"± {r.ci95:.4f}",
                      str(len(r.accuracies)), f"{r.seconds:.1f}")
    out_console.print(table)
    out_console.print(f"report: {escape(str(res.report_path))}")
