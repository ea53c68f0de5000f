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
from transferkit.cli._app import app


def main() -> None:
    """Entry point of the `transferkit` command."""
    app()


__all__ = ["app", "main"]
