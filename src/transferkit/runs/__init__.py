"""Runs: what each command does, one module per command (``runs/fit.py`` for
``transferkit fit``, ...), on one run-directory lifecycle (:mod:`.rundir`, :mod:`.resume`),
one way of reading a command's labelled data (:mod:`.evaluate`) and one report writer.

Importing this package is cheap; a run module is imported when one of its names is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"fit_run": "fit", "fit_into": "fit", "resume_run": "fit", "RunResult": "fit",
         "RUN_ARGS": "rundir", "evaluate_run": "evaluate", "evaluate_model": "evaluate",
         "Evaluation": "evaluate", "ProgressFn": "evaluate"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"transferkit.runs.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'transferkit.runs' has no attribute {name!r}")


__all__ = sorted(_LAZY)
