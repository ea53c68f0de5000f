"""`transferkit adapt`: a fit run of the ``adapt`` strategy, its source labelled and its
target not (a few labelled target items and a labelled target test set optional)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transferkit.runs.evaluate import ProgressFn
from transferkit.runs.fit import Log, RunResult, run_fit
from transferkit.runs.request import DataArg, FitRequest


def adapt_request(source: DataArg, target: DataArg, *, target_test: DataArg | None = None,
                  target_labeled: DataArg | None = None, **fields: Any) -> FitRequest:
    """The fit request of an adaptation from ``source`` to ``target``; ``fields`` are
    :class:`FitRequest`'s (``backbone``, ``test``, ``seed``, ``options``, ...)."""
    roles = {"target": target, "target-test": target_test, "target-labeled": target_labeled}
    return FitRequest(source, strategy="adapt",
                      roles={r: d for r, d in roles.items() if d is not None}, **fields)


def adapt_run(req: FitRequest, out: str | Path, *, overwrite: bool = False,
              progress: ProgressFn | None = None, log: Log | None = None) -> RunResult:
    """Run the adaptation ``req`` into ``out`` (see :func:`~transferkit.runs.fit.run_fit`),
    its report titled by method, source and target."""
    target = req.roles["target"]
    name = Path(str(getattr(target, "source", target))).name
    method = req.options.get("method") or req.spec.cls().get_params()["method"]
    title = (f"adapt ({method}): "
             f"{Path(str(getattr(req.data, 'source', req.data))).name} -> {name}")
    return run_fit(req, out, overwrite=overwrite, title=title, progress=progress, log=log)
