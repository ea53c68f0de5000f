"""`transferkit compare`: the seeds' small-data case study as a ladder of rungs."""

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
    progress_bar,
    use_device,
)
from transferkit.cli._options import (
    BackboneOpt,
    DeviceOpt,
    OverwriteOpt,
    PrecisionOpt,
    SeedOpt,
    backbone_for,
)


@app.command("compare")
def compare_cmd(
    data: Annotated[Path, typer.Argument(help="Image folder or CSV (as for 'fit').")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the rungs' runs and the "
                                                    "comparison report.")],
    backbone: BackboneOpt = None,
    rungs: Annotated[str | None, typer.Option(help="Comma-separated rungs (default: all): "
                                                   "scratch, scratch+dropout, "
                                                   "scratch+dropout+augment, frozen, "
                                                   "frozen+augment, finetune-top+augment, "
                                                   "finetune-all+augment; also "
                                                   "scratch+deeper+dropout(+augment); "
                                                   "'seed': seed 004's six models.")
                                 ] = None,
    test: Annotated[Path | None, typer.Option(help="Test data (default: a seeded stratified "
                                                   "split of DATA).")] = None,
    val: Annotated[Path | None, typer.Option(help="Validation data (default: --val-fraction "
                                                  "of the training data).")] = None,
    epochs: Annotated[int, typer.Option(help="Epochs of each transfer rung.", min=1)] = 10,
    scratch_epochs: Annotated[int, typer.Option(help="Epochs of each from-scratch rung.",
                                                min=1)] = 30,
    head_epochs: Annotated[int, typer.Option(help="Head-only epochs before fine-tuning in "
                                                  "the two-stage rungs.", min=0)] = 3,
    image_size: Annotated[int | None, typer.Option(help="Input size of the transfer rungs "
                                                        "(default: the backbone's).")] = None,
    scratch_image_size: Annotated[int, typer.Option(help="Input size of the from-scratch "
                                                         "CNN.")] = 64,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 32,
    test_fraction: Annotated[float, typer.Option(help="Fraction held out for testing when "
                                                      "no --test is given.")] = 0.25,
    val_fraction: Annotated[float, typer.Option(help="Fraction of the training data held "
                                                     "out for validation.")] = 0.1,
    seed: SeedOpt = 0,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
) -> None:
    """Reproduce the small-data case study: from-scratch CNNs vs transfer, on one split.

    Example: transferkit compare photos/ --backbone efficientnet_lite0 --out runs/ladder

    Example: transferkit compare photos/ --rungs scratch,frozen --image-size 128 --out runs/q
    """
    from transferkit.runs.compare import compare_run

    try:
        check_device(device, precision)
        use_device(device, precision)
        with progress_bar("features") as progress:
            result = compare_run(data, out, backbone=backbone_for(backbone, None),
                                 rungs=rungs, test=test, val=val,
                                 test_fraction=test_fraction, val_fraction=val_fraction,
                                 epochs=epochs, scratch_epochs=scratch_epochs,
                                 head_epochs=head_epochs, image_size=image_size,
                                 scratch_image_size=scratch_image_size, batch_size=batch_size,
                                 seed=seed, log=log, progress=progress,
                                 overwrite=overwrite)
    except USER_ERRORS as exc:
        fail(exc)
    _print_ladder(result)


def _print_ladder(result: Any) -> None:
    """Every rung's validation and test figures, the best marked."""
    table = Table(title="transfer ladder: best rung chosen on validation, test only reports")
    for col in ("rung", "val accuracy", "test accuracy", "macro F1", "ROC AUC", "time (s)",
                "trainable params"):
        table.add_column(col, justify="left" if col == "rung" else "right",
                         no_wrap=col == "rung")

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    for r in result.results:
        m = r.metrics or {}
        table.add_row(escape(r.rung.name) + (" (best)" if r is result.best else ""),
                      fmt(r.val_score), fmt(m.get("accuracy")) if r.error is None else "failed",
                      fmt(m.get("macro_f1")), fmt(m.get("roc_auc_ovr_macro")),
                      f"{r.seconds:.1f}", str(r.trainable_params or ""))
    out_console.print(table)
    out_console.print(f"report: {escape(str(result.report_path))}")
