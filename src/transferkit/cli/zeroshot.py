"""`transferkit zeroshot`: classes without training images, from descriptions or attributes."""

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


@app.command("zeroshot")
def zeroshot_cmd(
    data: Annotated[Path, typer.Argument(help="Labelled images (class folders); the unseen "
                                              "classes' images, if any, are never trained on.")],
    out: Annotated[Path, typer.Option("--out", help="Run directory to write.")],
    unseen: Annotated[str, typer.Option(help="Comma-separated classes without training "
                                             "images.")],
    classes: Annotated[Path | None, typer.Option(
        help="Class descriptions: a JSON {class: description} or a CSV class,description "
             "(classes without one are embedded by name).")] = None,
    attributes: Annotated[Path | None, typer.Option(
        help="A class x attribute CSV (a class column, then numeric attributes).")] = None,
    method: Annotated[str, typer.Option(
        help="ridge (default), ranking (margin loss), eszsl, dap (needs --attributes), or "
             "clip (an image-text backbone: no training).")
    ] = "ridge",
    backbone: BackboneOpt = None,
    test: Annotated[Path | None, typer.Option(
        help="Labelled test images (default: a seeded split of DATA).")] = None,
    test_fraction: Annotated[float, typer.Option(help="Test fraction without --test.")
                             ] = 0.25,
    no_calibration: Annotated[bool, typer.Option(
        "--no-calibration", help="Do not offset the seen classes' scores.")] = False,
    image_size: Annotated[int | None, typer.Option(help="Resize inputs.", min=8)] = None,
    seed: SeedOpt = 0,
    no_cache: NoCacheOpt = False,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
) -> None:
    """Zero-shot: learn from the seen classes' images and every class's description or
    attributes; classify test images among seen and unseen classes (generalised zero-shot).

    Example: transferkit zeroshot photos/ --classes descriptions.json --unseen okapi,tapir
    --out runs/zs
    """
    from transferkit.runs.zeroshot import zeroshot_run

    try:
        check_device(device, precision)
        if classes is None and attributes is None and method != "clip":
            raise ValueError("give --classes (descriptions) or --attributes")
        require_paths(("DATA", data), ("--test", test), ("--classes", classes), ("--attributes",
                      attributes))
        with _progress("features") as progress:
            use_device(device, precision)
            res = zeroshot_run(data, out, unseen=unseen.split(","), descriptions=classes,
                               attributes=attributes, method=method,
                               backbone=backbone_for(backbone, None),
                               test=test, test_fraction=test_fraction, seed=seed,
                               image_size=image_size, cache=not no_cache,
                               calibrate=not no_calibration, log=log, progress=progress,
                               overwrite=overwrite)
    except USER_ERRORS as exc:
        fail(exc)
    _print_gzsl(res.metrics, res.report_path)


def _print_gzsl(m: dict[str, Any], report: Path) -> None:
    """Seen, unseen and harmonic-mean accuracy, uncalibrated and calibrated."""
    table = Table(title=escape(f"zero-shot ({m['method']}, {m['class_vectors']})"))
    for col in ("", "seen", "unseen", "H"):
        table.add_column(col)
    for name, g in (("uncalibrated", m["gzsl"]), ("calibrated", m["gzsl_calibrated"])):
        table.add_row(name, *("n/a" if g[k] is None else f"{g[k]:.4f}"
                              for k in ("seen", "unseen", "H")))
    out_console.print(table)
    zsl = m["zsl_unseen_accuracy"]
    out_console.print(f"unseen images among the unseen classes only: "
                      f"{'n/a' if zsl is None else f'{zsl:.4f}'}")
    out_console.print(f"report: {escape(str(report))}")
