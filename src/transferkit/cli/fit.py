"""`transferkit fit`: fit a strategy on a dataset and write a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

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

_S = "Strategy option"  # help panel of the options that belong to one strategy or another


def _opt(help: str, *names: str, **limits: Any) -> Any:
    return typer.Option(*names, help=help, rich_help_panel=_S, show_default=False, **limits)


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
                                               "contrastive, zeroshot ('transferkit "
                                               "strategies' lists them).")] = "probe",
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
    val_fraction: Annotated[float, typer.Option(help="Fraction of the training data held out "
                                                     "for validation when no --val is given "
                                                     "(0 = none).")] = 0.0,
    test_fraction: Annotated[float | None, typer.Option(
        help="Fraction held out for testing when no --test is given (default 0.25).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (splits, initialisation, order).", min=0)
                    ] = 0,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Skip unreadable images (they "
                                                              "are counted in the report).")
                        ] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not read or write the "
                                                              "feature cache.")] = False,
    resume: Annotated[Path | None, typer.Option(help="Continue a killed 'fit' run in this "
                                                     "directory, with its saved options.")
                      ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
    guard: Annotated[bool, typer.Option(
        "--guard", help="Also train the no-transfer baseline (pixels / a CNN from scratch / "
                        "a bag of words) with the same budget; keep the better on validation "
                        "and say when transfer did worse.")] = False,
    option: Annotated[list[str] | None, typer.Option(
        "--option", "-o", help="Any strategy parameter as KEY=VALUE (repeatable), e.g. -o "
                               "label_smoothing=0.1.", rich_help_panel=_S)] = None,
    head: Annotated[str | None, _opt("probe/contrastive: shallow head, logreg (default), svm, "
                                     "knn or mlp.")] = None,
    C: Annotated[str | None, _opt("probe/contrastive: inverse regularisation strength, or "
                                  "'auto' (default: chosen on --val, else by CV).", "--C")
                 ] = None,
    freeze: Annotated[str | None, _opt("finetune/contrastive: leading backbone stages to "
                                       "freeze (0 = all trainable, -k = all but the last k, "
                                       "'all' = the head only; finetune's recipe: -2).")
                      ] = None,
    epochs: Annotated[int | None, _opt("Training epochs (default: finetune's recipe 15 with "
                                       "early stopping; lora and contrastive about 100 "
                                       "optimiser steps).", min=1)
                      ] = None,
    lr: Annotated[float | None, _opt("Backbone learning rate (finetune's recipe: 5e-4 "
                                     "images, 1e-4 text, 1e-3 from scratch).")] = None,
    freeze_last: Annotated[int | None, _opt("finetune: also keep the top N stages frozen "
                                            "(the seeds' advice for speech; our speech "
                                            "benchmark measured the opposite, see "
                                            "speech_digits_layers.md).", min=1)] = None,
    head_lr: Annotated[float | None, _opt("finetune: head learning rate (default 10x --lr on "
                                          "pretrained weights; --lr after --head-epochs).")
                       ] = None,
    batch_size: Annotated[int | None, _opt("Batch size (default 32; lora 16).", min=1)] = None,
    lora_r: Annotated[int | None, _opt("lora: adapter rank (default 8).", min=1)] = None,
    lora_targets: Annotated[str | None, _opt("lora: comma-separated module names to adapt "
                                             "(default: attention query,value).")] = None,
    loss: Annotated[str | None, _opt("contrastive: supcon (default) or pairs (SetFit's "
                                     "cosine-similarity loss).")] = None,
    temperature: Annotated[float | None, _opt("contrastive/zeroshot: softmax temperature.")
                           ] = None,
    descriptions: Annotated[Path | None, _opt("zeroshot: class descriptions, a JSON object or "
                                              "a CSV with label,description (default: the "
                                              "class names).")] = None,
    template: Annotated[str | None, _opt("zeroshot: text around a class name without "
                                         "description, e.g. 'a review about {}'.")] = None,
    optimizer: Annotated[str | None, _opt("adamw (default) or sgd.")] = None,
    schedule: Annotated[str | None, _opt("cosine (default), onecycle or constant.")] = None,
    warmup: Annotated[float | None, _opt("finetune: warm-up epochs (default 1 after "
                                         "--head-epochs, else 0).")] = None,
    head_epochs: Annotated[int | None, _opt("finetune: first train the head alone for this "
                                            "many epochs, then unfreeze (recipe: 3 for "
                                            "images).", min=0)] = None,
    layer_decay: Annotated[float | None, _opt("finetune: lr factor per stage going down "
                                              "(1 = same lr everywhere).")] = None,
    l2sp: Annotated[float | None, _opt("finetune: L2-SP strength (pull towards the pretrained "
                                       "weights).")] = None,
    lwf: Annotated[float | None, _opt("finetune: weight of the penalty keeping features close "
                                      "to the pretrained ones.")] = None,
    dropout: Annotated[float | None, _opt("finetune: dropout before the head.")] = None,
    augment: Annotated[str | None, _opt("finetune: augmentation, none, light or strong.")
                       ] = None,
    image_size: Annotated[int | None, _opt("finetune: resize inputs to this many pixels "
                                           "(faster on CPU).", min=8)] = None,
    class_weight: Annotated[str | None, _opt("finetune: 'balanced' to weight the loss "
                                             "against class imbalance.")] = None,
    keep_bn_stats: Annotated[bool, typer.Option(
        "--keep-bn-stats", help="finetune: keep the pretrained BatchNorm statistics in the "
                                "trained stages too (frozen stages always keep theirs).",
        rich_help_panel=_S)] = False,
    patience: Annotated[int | None, _opt("Stop after this many epochs without validation "
                                         "gain.", min=1)] = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
) -> None:
    """Fit a transfer strategy and write a run directory with model, metrics and report.

    Options under "Strategy option" go to the chosen strategy; one it does not take is an
    error (no option is silently ignored).

    Example: transferkit fit photos/ --strategy probe --out runs/a

    Example: transferkit fit photos/ --strategy finetune --freeze 4 --augment light --out runs/b

    Example (text, few labels): transferkit fit tickets.csv --text-column body --strategy
    contrastive --out runs/t

    Example (after a crash or kill): transferkit fit --resume runs/b
    """
    from transferkit.backbones.registry import resolve_backbone
    from transferkit.strategies.registry import strategy_spec

    strategy_options = {
        "head": head, "C": C, "freeze": freeze, "freeze_last": freeze_last, "epochs": epochs,
        "lr": lr, "head_lr": head_lr,
        "batch_size": batch_size, "lora_r": lora_r, "lora_targets": lora_targets,
        "loss": loss, "temperature": temperature, "descriptions": descriptions,
        "template": template, "optimizer": optimizer, "schedule": schedule,
        "warmup_epochs": warmup, "head_epochs": head_epochs, "layer_decay": layer_decay,
        "l2sp": l2sp, "lwf": lwf, "dropout": dropout, "augment": augment,
        "image_size": image_size, "class_weight": class_weight, "patience": patience,
        "train_bn": False if keep_bn_stats else None}
    try:
        check_device(device, precision)
        given = {k: v for k, v in strategy_options.items() if v is not None}
        extra = parse_options(option)
        clash = sorted(set(given) & set(extra))
        if clash:
            raise ValueError(f"--option {clash[0]}=... repeats an option given on its own")
        given.update(extra)
        exclusive(val=val, val_fraction=val_fraction, test=test, test_fraction=test_fraction)
        if resume is None:  # options first, in well under a second: nothing heavy loaded yet
            if data is None or out is None:
                raise ValueError("give DATA and --out (or --resume RUN)")
            strategy_spec(strategy).check_names(list(given))
            if backbone is not None:
                resolve_backbone(backbone, arch)
            for what, path in (("DATA", data), ("--val", val), ("--test", test)):
                if path is not None and not Path(path).exists():
                    raise ValueError(f"{path}: no such file or directory ({what})")
            backbone = backbone or default_backbone(data, text_column)
        use_device(device, precision)
        from transferkit.runs import fit_run, resume_run

        if resume is not None:
            with progress_bar("features") as progress:
                if out is not None and out.resolve() != resume.resolve():
                    raise ValueError(f"--out {out} with --resume {resume}: a resumed run "
                                     f"finishes in its own directory; leave --out out")
                again = {"data": data, "backbone": backbone, "arch": arch,
                         "val": val, "test": test, "text_column": text_column,
                         "strategy": None if strategy == "probe" else strategy,
                         "seed": seed or None, "test_fraction": test_fraction,
                         "val_fraction": val_fraction or None, "skip_bad": skip_bad or None,
                         "cache": False if no_cache else None, "guard": guard or None,
                         "label_column": None if label_column == "label" else label_column,
                         **given}
                result = resume_run(resume, progress=progress, log=log,
                                    options=again)
        else:
            with progress_bar("features") as progress:
                result = fit_run(
                    data, out, backbone=backbone,
                    strategy=strategy, arch=arch, val=val, test=test, seed=seed,
                    skip_bad=skip_bad, val_fraction=val_fraction,
                    test_fraction=0.25 if test_fraction is None else test_fraction,
                    cache=not no_cache, progress=progress, log=log, text_column=text_column,
                    label_column=label_column, overwrite=overwrite, guard=guard, **given)
    except USER_ERRORS as exc:
        fail(exc)
    if result.evaluation is None:  # a non-zero rank of a multi-process run
        return
    for name, ev in result.evaluations.items():
        print_metrics(ev.metrics, f"{name} ({len(ev.y_true)} items)")
    out_console.print(f"run directory: {escape(str(result.run_dir))}\n"
                      f"report: {escape(str(result.evaluation.report_path))}")


def exclusive(*, val: Path | None, val_fraction: float, test: Path | None,
              test_fraction: float | None) -> None:
    """Refuse options that exclude each other (none is silently ignored)."""
    if val is not None and val_fraction:
        raise ValueError("--val and --val-fraction exclude each other: --val gives the "
                         "validation data, --val-fraction holds it out of DATA; give one")
    if test is not None and test_fraction is not None:
        raise ValueError("--test and --test-fraction exclude each other: --test gives the "
                         "test data, --test-fraction holds it out of DATA; give one")


def default_backbone(data: Path, text_column: str | None) -> str:
    """minilm for text data, speech_embedding for audio, efficientnet_lite0 otherwise."""
    from transferkit.data.load import detect_modality
    from transferkit.data.text import is_text_csv

    p = Path(data)
    audio = False
    if p.is_file():
        text = is_text_csv(p, text_column) or text_column is not None
        if not text and p.suffix.lower() == ".csv":
            from transferkit.data.dataset import from_csv

            try:
                audio = from_csv(p, label_column=None).modality == "audio"
            except Exception:  # the real read reports a bad CSV with its line
                audio = False
    elif p.is_dir():
        subs = [c for c in p.iterdir() if c.is_dir() and c.name.lower() in
                ("train", "training")]
        modality = detect_modality(subs[0] if subs else p)[0]
        text, audio = modality == "text", modality == "audio"
    else:
        text = False
    return "minilm" if text else "speech_embedding" if audio else "efficientnet_lite0"
