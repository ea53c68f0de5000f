"""The negative-transfer guard: beside a transfer model, the no-transfer baseline the registry
has (raw pixels or a CNN from scratch for images, a bag of words for text) is trained with the
same budget on the same split; the one with the better validation accuracy is kept, and when
transfer did worse the run says so, with the gap."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transferkit.data.dataset import Splits
from transferkit.strategies import make_strategy

#: options of the transfer run that the baseline copies (the same budget)
_BUDGET = ("epochs", "batch_size", "lr", "image_size", "augment", "dropout", "head", "C")


@dataclass
class GuardResult:
    """Both models' validation accuracies and which was kept."""

    baseline: str
    transfer_val: float | None
    baseline_val: float | None
    kept: str
    transfer_estimator: Any
    baseline_estimator: Any

    @property
    def estimator(self) -> Any:
        """The kept model's estimator."""
        return self.baseline_estimator if self.kept == "baseline" else self.transfer_estimator

    @property
    def gap(self) -> float | None:
        """Transfer minus baseline validation accuracy (points of accuracy, as a fraction)."""
        if self.transfer_val is None or self.baseline_val is None:
            return None
        return self.transfer_val - self.baseline_val

    def message(self) -> str:
        """One line for the CLI and the report."""
        if self.gap is None:
            return f"guard: no validation accuracy to compare with {self.baseline}"
        pts = 100 * self.gap
        if self.kept == "baseline":
            return (f"guard: NEGATIVE TRANSFER — the no-transfer baseline ({self.baseline}) "
                    f"scored {self.baseline_val:.3f} on the validation data, the transfer model "
                    f"{self.transfer_val:.3f} ({pts:+.1f} points): the baseline is kept")
        return (f"guard: transfer {self.transfer_val:.3f} vs the no-transfer baseline "
                f"({self.baseline}) {self.baseline_val:.3f} on the validation data "
                f"({pts:+.1f} points): the transfer model is kept")


def baseline_for(strategy: str, modality: str) -> tuple[str, str, dict[str, Any]] | None:
    """(strategy, backbone, fixed options) of the no-transfer baseline for a run, or None
    (the strategy's registration says which)."""
    from transferkit.strategies.registry import strategy_spec

    found = strategy_spec(strategy).baseline(modality)
    return None if found is None else (found[0], found[1], {})


def run_guard(est: Any, strategy: str, options: dict[str, Any], splits: Splits, *,
              seed: int, cache: Any, log: Callable[[str], None] | None = None
              ) -> GuardResult | None:
    """Fit the baseline like ``est`` was fitted (same train and validation data, the budget
    options it takes), compare on validation, keep the better; None when there is no
    baseline for this strategy and modality."""
    spec = baseline_for(strategy, splits.train.modality)
    if spec is None:
        if log is not None:
            log(f"guard: no no-transfer baseline for strategy {strategy!r} on "
                f"{splits.train.modality} data")
        return None
    b_strategy, b_backbone, fixed = spec
    from transferkit.strategies.registry import strategy_spec

    takes = strategy_spec(b_strategy)
    budget = {k: v for k, v in options.items() if k in _BUDGET and takes.accepts(k)
              and v is not None}
    base = make_strategy(b_strategy, context={"backbone": b_backbone, "seed": seed,
                                              "cache": cache, "log": log},
                         **{**budget, **fixed})
    if log is not None:
        log(f"guard: training the no-transfer baseline ({b_strategy} on {b_backbone}) with "
            f"the same budget on the same split")
    base.fit(splits.train, X_val=splits.val)
    t_val, b_val = getattr(est, "val_score_", None), getattr(base, "val_score_", None)
    kept = "baseline" if (t_val is not None and b_val is not None and b_val > t_val) \
        else "transfer"
    res = GuardResult(f"{b_strategy} on {b_backbone}", t_val, b_val, kept, est, base)
    if log is not None:
        log(res.message())
    return res


def guard_table(g: Any, splits: Splits) -> dict[str, Any]:
    """Transfer beside the no-transfer baseline: validation (the choice) and test accuracy."""
    def test_acc(e: Any) -> str:
        t = splits.test
        if t is None or t.labels is None:
            return "n/a"
        return f"{float((e.predict_proba(t).argmax(1) == t.labels).mean()):.4f}"

    def val(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    rows = [["transfer", val(g.transfer_val), test_acc(g.transfer_estimator),
             "kept" if g.kept == "transfer" else ""],
            [f"no transfer: {g.baseline}", val(g.baseline_val),
             test_acc(g.baseline_estimator), "kept" if g.kept == "baseline" else ""]]
    return {"title": "Negative-transfer guard (chosen on validation data)",
            "columns": ["model", "validation accuracy", "test accuracy", ""], "rows": rows,
            "note": g.message()}
