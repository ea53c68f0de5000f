"""The command-line tool: a thin layer over the library, one module per command."""

from transferkit.cli import (  # noqa: F401
    adapt,
    auto,
    compare,
    demo,
    evaluate,
    export,
    fewshot,
    fit,
    models,
    multitask,
    predict,
    rank,
    zeroshot,
)
from transferkit.cli._app import app, run_app


def main() -> None:
    """Entry point of the `transferkit` command."""
    run_app()


__all__ = ["app", "main"]
