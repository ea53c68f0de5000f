"""The command-line tool: a thin layer over the library."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from transferkit.errors import TransferkitError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="transferkit: transfer learning from pretrained models to small data.")
out_console = Console()
err_console = Console(stderr=True)


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on a terminal; silent otherwise."""
    bar = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("items"), TimeRemainingColumn(), console=err_console,
                   transient=True, disable=not err_console.is_terminal)
    task = bar.add_task(label, total=None)
    with bar:
        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _fail(exc: Exception) -> None:
    err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


@app.command("models")
def models_cmd(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
               ) -> None:
    """List the backbones that can be used, marking which work offline.

    Example: transferkit models
    """
    from transferkit.backbones import list_backbones

    rows = list_backbones()
    if as_json:
        out_console.print_json(json.dumps(rows))
        return
    table = Table(title="transferkit backbones")
    for col in ("name", "modality", "offline", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["modality"], "yes" if r["offline"] else "no (network)",
                      r["description"])
    out_console.print(table)


@app.command("fit")
def fit_cmd(
    data: Annotated[Path | None, typer.Argument(
        help="Image folder (DATA/<class>/*, optionally with train/val/test inside), a CSV "
             "(path,label), a text CSV (text,label) or a folder of .txt files per class. "
             "Not needed with --resume.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run directory to write.")] = None,
    backbone: Annotated[str | None, typer.Option(
        help="Backbone: a name from 'transferkit models' (images: efficientnet_lite0, text: "
             "minilm), timm:<arch>, hf:<model id>, a local weights file or text model folder "
             "(default: efficientnet_lite0 for images, minilm for text).")] = None,
    strategy: Annotated[str, typer.Option(help="Transfer strategy: probe, finetune, lora, "
                                               "contrastive or zeroshot.")] = "probe",
    text_column: Annotated[str | None, typer.Option(help="Text CSV: the column holding the "
                                                         "texts (default: text, sentence, "
                                                         "...).")] = None,
    label_column: Annotated[str, typer.Option(help="CSV: the column holding the labels.")
                            ] = "label",
    arch: Annotated[str | None, typer.Option(help="timm architecture of a local weights "
                                                  "file.")] = None,
    val: Annotated[Path | None, typer.Option(help="Validation data (model selection, early "
                                                  "stopping).")] = None,
    test: Annotated[Path | None, typer.Option(help="Test data (default: a seeded stratified "
                                                   "split of DATA).")] = None,
    head: Annotated[str, typer.Option(help="probe: shallow head, logreg, svm, knn or mlp.")
                    ] = "logreg",
    C: Annotated[str, typer.Option("--C", help="probe: inverse regularisation strength, or "
                                               "'auto' (chosen on --val, else by CV).")
                 ] = "auto",
    freeze: Annotated[str, typer.Option(help="finetune: leading backbone stages to freeze "
                                             "(0 = all trainable, 'all' = train the head only)."
                                        )] = "0",
    epochs: Annotated[int | None, typer.Option(
        help="finetune/lora/contrastive: training epochs (default: finetune 10; lora and "
             "contrastive about 100 optimiser steps).")] = None,
    lr: Annotated[float | None, typer.Option(help="finetune: backbone learning rate (default "
                                                  "1e-4 pretrained, 1e-3 from scratch).")
                  ] = None,
    head_lr: Annotated[float | None, typer.Option(help="finetune: head learning rate (default "
                                                       "10x --lr on pretrained weights; "
                                                       "--lr after --head-epochs).")
                       ] = None,
    batch_size: Annotated[int | None, typer.Option(help="finetune: batch size (default 32; "
                                                        "lora 16).")] = None,
    lora_r: Annotated[int | None, typer.Option(help="lora: adapter rank (default 8).")] = None,
    lora_targets: Annotated[str | None, typer.Option(help="lora: comma-separated module names "
                                                          "to adapt (default: attention query,"
                                                          "value).")] = None,
    loss: Annotated[str | None, typer.Option(help="contrastive: supcon (default) or pairs "
                                                  "(SetFit's cosine-similarity loss).")
                    ] = None,
    temperature: Annotated[float | None, typer.Option(help="contrastive/zeroshot: softmax "
                                                           "temperature.")] = None,
    descriptions: Annotated[Path | None, typer.Option(help="zeroshot: class descriptions, a "
                                                           "JSON object or a CSV with label,"
                                                           "description (default: the class "
                                                           "names).")] = None,
    template: Annotated[str | None, typer.Option(help="zeroshot: text around a class name "
                                                      "without description, e.g. 'a review "
                                                      "about {}'.")] = None,
    optimizer: Annotated[str, typer.Option(help="finetune: adamw or sgd.")] = "adamw",
    schedule: Annotated[str, typer.Option(help="finetune: cosine, onecycle or constant.")
                        ] = "cosine",
    warmup: Annotated[float | None, typer.Option(help="finetune: warm-up epochs (default 1 "
                                                      "after --head-epochs, else 0).")] = None,
    head_epochs: Annotated[int, typer.Option(help="finetune: first train the head alone for "
                                                  "this many epochs, then unfreeze.")] = 0,
    layer_decay: Annotated[float, typer.Option(help="finetune: lr factor per stage going "
                                                    "down (1 = same lr everywhere).")] = 1.0,
    l2sp: Annotated[float, typer.Option(help="finetune: L2-SP strength (pull towards the "
                                             "pretrained weights).")] = 0.0,
    lwf: Annotated[float, typer.Option(help="finetune: weight of the penalty keeping features "
                                            "close to the pretrained ones.")] = 0.0,
    dropout: Annotated[float, typer.Option(help="finetune: dropout before the head.")] = 0.0,
    augment: Annotated[str, typer.Option(help="finetune: augmentation, none, light or strong."
                                         )] = "none",
    image_size: Annotated[int | None, typer.Option(help="finetune: resize inputs to this many "
                                                        "pixels (faster on CPU).")] = None,
    class_weight: Annotated[str | None, typer.Option(help="finetune: 'balanced' to weight "
                                                          "the loss against class imbalance.")
                            ] = None,
    keep_bn_stats: Annotated[bool, typer.Option("--keep-bn-stats", help="finetune: keep the "
                                                "pretrained BatchNorm statistics in the "
                                                "trained stages too (frozen stages always "
                                                "keep theirs).")] = False,
    patience: Annotated[int | None, typer.Option(help="finetune: stop after this many epochs "
                                                      "without validation gain.")] = None,
    val_fraction: Annotated[float, typer.Option(help="Fraction of the training data held out "
                                                     "for validation when no --val is given "
                                                     "(0 = none).")] = 0.0,
    resume: Annotated[Path | None, typer.Option(help="Continue a killed 'fit' run in this "
                                                     "directory, with its saved options.")
                      ] = None,
    test_fraction: Annotated[float, typer.Option(help="Fraction held out for testing when no "
                                                      "--test is given.")] = 0.25,
    seed: Annotated[int, typer.Option(help="Random seed (splits, initialisation, order).")
                    ] = 0,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Skip unreadable images (they "
                                                              "are counted in the report).")
                        ] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not read or write the "
                                                              "feature cache.")] = False,
) -> None:
    """Fit a transfer strategy and write a run directory with model, metrics and report.

    Example: transferkit fit photos/ --strategy probe --out runs/a

    Example: transferkit fit photos/ --strategy finetune --freeze 4 --augment light --out runs/b

    Example (text, few labels): transferkit fit tickets.csv --text-column body --strategy
    contrastive --out runs/t

    Example (after a crash or kill): transferkit fit --resume runs/b
    """
    from transferkit.runs import fit_run, resume_run

    try:
        if resume is not None:
            with _progress("features") as progress:
                result = resume_run(resume, progress=progress, log=_log)
        else:
            if data is None or out is None:
                raise ValueError("give DATA and --out (or --resume RUN)")
            c_value: float | str = C if C == "auto" else _float(C, "--C")
            freeze_v: int | str = freeze if freeze == "all" else _int(freeze, "--freeze")
            if backbone is None:
                backbone = _default_backbone(data, text_column)
            if strategy in ("lora", "contrastive") and freeze == "0":
                freeze_v = None  # their own defaults
            with _progress("features") as progress:
                result = fit_run(
                    data, out, backbone=backbone, strategy=strategy, arch=arch, val=val,
                    test=test, head=head, seed=seed, skip_bad=skip_bad,
                    test_fraction=test_fraction, val_fraction=val_fraction,
                    cache=not no_cache, progress=progress, log=_log, C=c_value,
                    freeze=freeze_v, epochs=epochs, lr=lr, head_lr=head_lr,
                    batch_size=batch_size, optimizer=optimizer, schedule=schedule,
                    warmup_epochs=warmup, head_epochs=head_epochs, layer_decay=layer_decay,
                    l2sp=l2sp, lwf=lwf, dropout=dropout, augment=augment,
                    image_size=image_size, class_weight=class_weight, patience=patience,
                    train_bn=not keep_bn_stats, text_column=text_column,
                    label_column=label_column, lora_r=lora_r, lora_targets=lora_targets,
                    loss=loss, temperature=temperature, descriptions=descriptions,
                    template=template)
    except (TransferkitError, ValueError) as exc:
        _fail(exc)
    if result.evaluation is None:  # a non-zero rank of a multi-process run
        return
    m = result.evaluation.metrics
    _print_metrics(m, f"test ({len(result.evaluation.y_true)} items)")
    out_console.print(f"run directory: {result.run_dir}\nreport: {result.evaluation.report_path}")


@app.command("compare")
def compare_cmd(
    data: Annotated[Path, typer.Argument(help="Image folder or CSV (as for 'fit').")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the rungs' runs and the "
                                                    "comparison report.")],
    backbone: Annotated[str, typer.Option(help="Pretrained backbone of the transfer rungs.")
                        ] = "efficientnet_lite0",
    rungs: Annotated[str | None, typer.Option(help="Comma-separated rungs (default: all): "
                                                   "scratch, scratch+dropout, "
                                                   "scratch+dropout+augment, frozen, "
                                                   "frozen+augment, finetune-top+augment, "
                                                   "finetune-all+augment.")] = None,
    test: Annotated[Path | None, typer.Option(help="Test data (default: a seeded stratified "
                                                   "split of DATA).")] = None,
    val: Annotated[Path | None, typer.Option(help="Validation data (default: --val-fraction "
                                                  "of the training data).")] = None,
    epochs: Annotated[int, typer.Option(help="Epochs of each transfer rung.")] = 10,
    scratch_epochs: Annotated[int, typer.Option(help="Epochs of each from-scratch rung.")
                              ] = 30,
    head_epochs: Annotated[int, typer.Option(help="Head-only epochs before fine-tuning in "
                                                  "the two-stage rungs.")] = 3,
    image_size: Annotated[int | None, typer.Option(help="Input size of the transfer rungs "
                                                        "(default: the backbone's).")] = None,
    scratch_image_size: Annotated[int, typer.Option(help="Input size of the from-scratch "
                                                         "CNN.")] = 64,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 32,
    test_fraction: Annotated[float, typer.Option(help="Fraction held out for testing when "
                                                      "no --test is given.")] = 0.25,
    val_fraction: Annotated[float, typer.Option(help="Fraction of the training data held "
                                                     "out for validation.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Random seed (split, initialisation, order).")
                    ] = 0,
) -> None:
    """Reproduce the small-data case study: from-scratch CNNs vs transfer, on one split.

    Example: transferkit compare photos/ --backbone efficientnet_lite0 --out runs/ladder

    Example: transferkit compare photos/ --rungs scratch,frozen --image-size 128 --out runs/q
    """
    from transferkit.compare import compare_run

    try:
        with _progress("features") as progress:
            result = compare_run(data, out, backbone=backbone, rungs=rungs, test=test, val=val,
                                 test_fraction=test_fraction, val_fraction=val_fraction,
                                 epochs=epochs, scratch_epochs=scratch_epochs,
                                 head_epochs=head_epochs, image_size=image_size,
                                 scratch_image_size=scratch_image_size, batch_size=batch_size,
                                 seed=seed, log=_log, progress=progress)
    except (TransferkitError, ValueError) as exc:
        _fail(exc)
    table = Table(title="transfer ladder (held-out test set)")
    for col in ("rung", "accuracy", "macro F1", "ROC AUC", "time (s)", "trainable params"):
        table.add_column(col, justify="left" if col == "rung" else "right")
    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    for r in result.results:
        m = r.metrics or {}
        table.add_row(r.rung.name + (" (best)" if r is result.best else ""),
                      fmt(m.get("accuracy")) if r.error is None else "failed",
                      fmt(m.get("macro_f1")), fmt(m.get("roc_auc_ovr_macro")),
                      f"{r.seconds:.1f}", str(r.trainable_params or ""))
    out_console.print(table)
    out_console.print(f"report: {result.report_path}")


def _predict_items(modality: str, files: list[Path], texts: list[str],
                   text_column: str | None) -> tuple[list[str], list[Any]]:
    """(display names, model inputs) for predict: image paths, or texts from options/files."""
    if modality != "text":
        if texts:
            raise ValueError("--text is for text models; this run classifies images")
        if not files:
            raise ValueError("give image files to classify")
        return [str(f) for f in files], [Path(f) for f in files]
    from transferkit.data.text import _decode, from_text_csv

    names, items = [], []
    for t in texts:
        names.append(t)
        items.append(t)
    for f in files:
        if f.suffix.lower() == ".csv":
            ds = from_text_csv(f, text_column=text_column, label_column=_any_column(f))
            names += [str(o) for o in ds.origins]
            items += list(ds.items)
        else:
            try:
                items.append(_decode(f.read_bytes(), str(f)))
            except FileNotFoundError:
                raise ValueError(f"{f}: no such file") from None
            names.append(str(f))
    if not items:
        raise ValueError("give texts with --text, .txt files or a text CSV")
    return names, items


def _any_column(csv_path: Path) -> str:
    """A label column for reading a CSV whose labels predict ignores (the text column if none)."""
    import csv

    with open(csv_path, encoding="utf-8-sig", errors="replace", newline="") as f:
        header = next(csv.reader(f), [])
    return "label" if "label" in header else (header[0] if header else "label")


def _default_backbone(data: Path, text_column: str | None) -> str:
    """minilm for text data, efficientnet_lite0 otherwise."""
    from transferkit.data.text import is_text_csv, is_text_folder

    p = Path(data)
    if p.is_file():
        text = is_text_csv(p, text_column) or text_column is not None
    elif p.is_dir():
        subs = [c for c in p.iterdir() if c.is_dir() and c.name.lower() in
                ("train", "training")]
        text = is_text_folder(subs[0] if subs else p)
    else:
        text = False
    return "minilm" if text else "efficientnet_lite0"


def _log(line: str) -> None:
    err_console.print(line, highlight=False, soft_wrap=True)


def _int(s: str, name: str) -> int:
    try:
        return int(s)
    except ValueError:
        _fail(ValueError(f"{name} must be a whole number or 'all', got {s!r}"))
        raise


def _float(s: str, name: str) -> float:
    try:
        return float(s)
    except ValueError:
        _fail(ValueError(f"{name} must be a number or 'auto', got {s!r}"))
        raise


def _print_metrics(m: dict[str, Any], label: str) -> None:
    table = Table(title=f"metrics on {label}")
    for col in ("accuracy", "balanced accuracy", "macro F1", "ROC AUC (OvR)", "skipped"):
        table.add_column(col, justify="right")
    auc = m.get("roc_auc_ovr_macro")
    table.add_row(f"{m['accuracy']:.4f}", f"{m['balanced_accuracy']:.4f}", f"{m['macro_f1']:.4f}",
                  "n/a" if auc is None else f"{auc:.4f}",
                  str(len(m.get("skipped_files", [])) + len(m.get("train_skipped_files", []))))
    out_console.print(table)


@app.command("evaluate")
def evaluate_cmd(
    run: Annotated[Path, typer.Argument(help="Run directory written by 'transferkit fit'.")],
    data: Annotated[Path, typer.Argument(help="Labelled image folder or CSV.")],
    out: Annotated[Path | None, typer.Option(help="Where to write metrics.json and "
                                                  "report.html (default RUN/eval-<DATA>).")
                   ] = None,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Skip unreadable images.")
                        ] = False,
    text_column: Annotated[str | None, typer.Option(help="Text CSV: the text column.")
                           ] = None,
    label_column: Annotated[str, typer.Option(help="CSV: the label column.")] = "label",
) -> None:
    """Evaluate a saved run on labelled data: metrics.json and report.html.

    Example: transferkit evaluate runs/a new_photos/
    """
    from transferkit.runs import evaluate_run

    try:
        with _progress("features") as progress:
            ev = evaluate_run(run, data, out, skip_bad=skip_bad, progress=progress,
                              text_column=text_column, label_column=label_column)
    except TransferkitError as exc:
        _fail(exc)
    _print_metrics(ev.metrics, f"{data} ({len(ev.y_true)} items)")
    out_console.print(f"report: {ev.report_path}")


@app.command("predict")
def predict_cmd(
    run: Annotated[Path, typer.Argument(help="Run directory.")],
    files: Annotated[list[Path] | None, typer.Argument(
        help="Image files; for a text model, .txt files (one text each) or a text CSV.")
                     ] = None,
    text: Annotated[list[str] | None, typer.Option("--text", help="A text to classify "
                                                                  "(repeatable).")] = None,
    text_column: Annotated[str | None, typer.Option(help="Text CSV: the text column.")
                           ] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Classes to show per file.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Classify files (or texts) with a saved run, offline.

    Example: transferkit predict runs/a cat.jpg dog.png --top-k 3

    Example: transferkit predict runs/tickets --text "my invoice is wrong" --text "app crashes"
    """
    from transferkit.model import TransferModel

    try:
        model = TransferModel.load(run)
        names, items = _predict_items(model.backbone.modality, files or [], text or [],
                                      text_column)
        proba = model.predict_proba(items, cache=False)
    except (TransferkitError, ValueError) as exc:
        _fail(exc)
    files = names  # type: ignore[assignment]
    k = min(top_k, len(model.class_names))
    results = []
    for f, p in zip(files, proba, strict=True):
        order = p.argsort()[::-1][:k]
        results.append({"file": str(f)[:80], "top": [{"label": model.class_names[i],
                                                 "probability": round(float(p[i]), 6)}
                                                for i in order]})
    if as_json:
        for r in results:
            sys.stdout.write(json.dumps(r) + "\n")
        return
    table = Table()
    table.add_column("file")
    table.add_column("prediction")
    table.add_column("probability", justify="right")
    for r in results:
        for j, t in enumerate(r["top"]):
            table.add_row(r["file"] if j == 0 else "", t["label"], f"{t['probability']:.4f}")
    out_console.print(table)


@app.command("export")
def export_cmd(
    run: Annotated[Path, typer.Argument(help="Run directory.")],
    onnx: Annotated[Path, typer.Option("--onnx", help="ONNX file to write.")],
) -> None:
    """Export a run's model (preprocessed image -> probabilities) to ONNX.

    Example: transferkit export runs/a --onnx model.onnx
    """
    from transferkit.model import TransferModel

    try:
        path = TransferModel.load(run).export_onnx(onnx)
    except TransferkitError as exc:
        _fail(exc)
    out_console.print(f"wrote {path}")


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option(help="Run directory for the demo.")] = Path("demo-run"),
) -> None:
    """Offline demo: pretrained features vs raw pixels on a bundled Fashion-MNIST sample.

    Example: transferkit demo --out demo-run
    """
    from transferkit.demo import run_demo

    try:
        with _progress("features") as progress:
            res = run_demo(out, progress=progress)
    except TransferkitError as exc:
        _fail(exc)
    table = Table(title=f"Fashion-MNIST sample: {res['train_size']} training images, "
                        f"{res['test_size']} test images (same split)")
    for col in ("model", "accuracy", "balanced acc.", "macro F1", "time (s)"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in res["rows"]:
        table.add_row(r["model"], f"{r['accuracy']:.3f}", f"{r['balanced_accuracy']:.3f}",
                      f"{r['macro_f1']:.3f}", f"{r['seconds']:.1f}")
    out_console.print(table)
    out_console.print(f"report: {res['report']}")


def main() -> None:
    """Entry point of the `transferkit` command."""
    app()


if __name__ == "__main__":
    main()
