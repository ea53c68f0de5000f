"""Exceptions raised by transferkit; each message names the offending file, row or argument."""

from __future__ import annotations


class TransferkitError(Exception):
    """Base class for every error transferkit raises on bad input."""


class DataError(TransferkitError, ValueError):
    """A dataset, file or label that cannot be used as given."""


class ImageReadError(DataError):
    """An image file that is missing, corrupt or truncated."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")


class BackboneError(TransferkitError, ValueError):
    """A backbone name, weights file or architecture that cannot be loaded."""


class RunError(TransferkitError):
    """A run directory that is missing, incomplete or from an incompatible version."""
