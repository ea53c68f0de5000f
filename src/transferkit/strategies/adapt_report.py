"""What the report and metrics.json say of a domain adaptation: the label-free choice
beside the oracle's (the best target-test epoch, never used to choose) and beside the
source-only model trained with the same budget."""

from __future__ import annotations

from typing import Any


def adaptation_summary(est: Any, run: dict[str, Any]) -> dict[str, Any]:
    """What metrics.json says of an adaptation: the choice, the oracle, source-only."""

    def at(r: dict[str, Any]) -> dict[str, Any]:
        row = r["row"]
        return {"epoch": r["best_epoch"],
                **{k: row.get(k) for k in ("source_val_accuracy", "target_im",
                                           "target_diversity", "target_test_accuracy",
                                           "domain_acc")},
                "train_seconds": round(r["seconds"], 2)}

    out: dict[str, Any] = {"method": est.method, "select": est.select_,
                           "kept": est.kept_, "flags": est.flags_, "chosen": at(run)}
    if hasattr(est, "weight_info_"):
        out["reweight"] = est.weight_info_
    if est.baseline_ is not None:
        out["source_only"] = at(est.baseline_)
    if run.get("trained") is False:  # refused before training: the model is source-only
        out["trained"] = False
        return out
    tests = [(r["epoch"], r["target_test_accuracy"]) for r in run["history"]
             if r.get("target_test_accuracy") is not None]
    if tests:
        epoch, acc = max(tests, key=lambda t: t[1])
        out["oracle"] = {"epoch": epoch, "target_test_accuracy": acc,
                         "note": "the epoch the labelled target test set would have "
                                 "picked (never used to choose)"}
    return out


def adaptation_table(est: Any, run: dict[str, Any]) -> dict[str, Any]:
    """The report's comparison: source-only vs the method (label-free choice, oracle)."""
    s = est.summary_

    def fmt(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    rows = []
    if "source_only" in s:
        b = s["source_only"]
        rows.append(["source-only (same budget)", fmt(b["epoch"]),
                     fmt(b["source_val_accuracy"]), fmt(b["target_im"]),
                     fmt(b["target_test_accuracy"])])
    c = s["chosen"]
    if s.get("trained") is False:
        rows.append([f"{est.method}: not trained (refused before training)", "n/a", "n/a",
                     "n/a", "n/a"])
    else:
        rows.append([f"{est.method} (label-free choice: {est.select_})", fmt(c["epoch"]),
                     fmt(c["source_val_accuracy"]), fmt(c["target_im"]),
                     fmt(c["target_test_accuracy"])])
    if "oracle" in s:
        o = s["oracle"]
        row = next(r for r in run["history"] if r["epoch"] == o["epoch"])
        rows.append([f"{est.method} (oracle: best target-test epoch, for reference)",
                     fmt(o["epoch"]), fmt(row.get("source_val_accuracy")),
                     fmt(row.get("target_im")), fmt(o["target_test_accuracy"])])
    note = (f"kept: {s['kept']}" + (f" — flagged: {'; '.join(s['flags'])}"
                                     if s["flags"] else ""))
    return {"title": "Adaptation: the chosen model beside source-only and the oracle",
            "columns": ["model", "epoch", "source val accuracy", "target IM score",
                        "target test accuracy"], "rows": rows, "note": note}
