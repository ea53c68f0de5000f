"""`transferkit predict`: classify files or texts with a saved run, offline."""

from __future__ import annotations

import json
import sys
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
    out_console,
    use_device,
)
from transferkit.cli._options import DeviceOpt, PrecisionOpt


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
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Classes to show per item.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
) -> None:
    """Classify files (or texts) with a saved run, offline.

    Example: transferkit predict runs/a cat.jpg dog.png --top-k 3

    Example: transferkit predict runs/tickets --text "my invoice is wrong" --text "app crashes"
    """
    from transferkit.model import TransferModel

    try:
        check_device(device, precision)
        use_device(device, precision)
        model = TransferModel.load(run)
        names, items = _predict_items(model.backbone.modality, files or [], text or [],
                                      text_column)
        probas = model.predict_all(items, cache=False)
    except USER_ERRORS as exc:
        fail(exc)
    key = "text" if model.backbone.modality == "text" else "file"
    results = _rows(model, names, probas, key, top_k)
    if as_json:
        for r in results:
            sys.stdout.write(json.dumps(r) + "\n")
        return
    _print_rows(results, key, several=len(probas) > 1)


def _rows(model: Any, names: list[str], probas: dict[str, Any], key: str,
          top_k: int) -> list[dict[str, Any]]:
    """One row per item: its top-k classes (per head, for a model with several)."""
    results = []
    for i, name in enumerate(names):
        tops = {}
        for head, proba in probas.items():
            classes = model.task_classes[head]
            order = proba[i].argsort()[::-1][:min(top_k, len(classes))]
            tops[head] = [{"label": classes[j], "probability": round(float(proba[i][j]), 6)}
                          for j in order]
        row: dict[str, Any] = {key: str(name)[:80]}
        if len(tops) == 1:
            row["top"] = next(iter(tops.values()))
        else:
            row["heads"] = tops
        results.append(row)
    return results


def _print_rows(results: list[dict[str, Any]], key: str, several: bool) -> None:
    """The predictions as a table (a head column when the model has several heads)."""
    table = Table()
    table.add_column(key)
    if several:
        table.add_column("head")
    table.add_column("prediction", no_wrap=True)
    table.add_column("probability", justify="right")
    for r in results:
        first = True
        for head, top in (r["heads"] if "heads" in r else {"": r["top"]}).items():
            for t in top:
                cells = [escape(r[key]) if first else ""]
                if several:
                    cells.append(escape(head))
                cells += [escape(t["label"]), f"{t['probability']:.4f}"]
                table.add_row(*cells)
                first = False
    out_console.print(table)


def _predict_items(modality: str, files: list[Path], texts: list[str],
                   text_column: str | None) -> tuple[list[str], list[Any]]:
    """(display names, model inputs) for predict: image paths, or texts from options/files."""
    if modality != "text":
        what = "audio clips" if modality == "audio" else "images"
        if texts:
            raise ValueError(f"--text is for text models; this run classifies {what}")
        if not files:
            raise ValueError(f"give {what} to classify (files)")
        return [str(f) for f in files], [Path(f) for f in files]
    from transferkit.data.manifest import decode_utf8
    from transferkit.data.text import from_text_csv

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
                items.append(decode_utf8(f.read_bytes(), str(f)))
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
