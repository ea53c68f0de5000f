"""The command-line tool: a thin layer over the library, one module per command."""

from transferkit.cli import compare, demo, evaluate, export, fit, models, predict  # noqa: F401
from transferkit.cli._app import app


def main() -> None:
    """Entry point of the `transferkit` command."""
    app()


__all__ = ["app", "main"]
