"""The glyph meta-learning table across seeds: mean ± standard deviation (across seeds) of the
600-episode accuracies of ``fewshot_glyphs.py`` runs, read from their results files (each seed
a separate run: its own drawings, class split, meta-training and episodes).

Run (after the per-seed runs):
    .venv/bin/python benchmarks/fewshot_glyphs.py --seed 1 --name fewshot_glyphs_seed1 ...
    .venv/bin/python benchmarks/fewshot_glyphs_seeds.py fewshot_glyphs fewshot_glyphs_seed1 ...
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

from _common import RESULTS, machine, write_results


def summarise(runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (method, shots): the accuracy of each run and their mean and std."""
    cells: dict[tuple[str, int], dict[str, Any]] = {}
    for name, payload in runs.items():
        seed = payload.get("seed", 0)
        for r in payload["rows"]:
            c = cells.setdefault((r["method"], r["shots"]),
                                 {"method": r["method"], "shots": r["shots"], "runs": []})
            c["runs"].append({"file": name, "seed": seed, "accuracy": r["accuracy"],
                              "ci95": r["ci95"], "train_seconds": r["train_seconds"]})
    out = []
    for c in cells.values():
        accs = [x["accuracy"] for x in c["runs"]]
        c["mean"] = statistics.mean(accs)
        c["std"] = statistics.stdev(accs) if len(accs) > 1 else None
        c["seeds"] = len(accs)
        out.append(c)
    return sorted(out, key=lambda c: c["shots"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="results names (benchmarks/results/NAME.json)")
    ap.add_argument("--seeds", type=int, nargs="+", help="the seed of each run, in order")
    ap.add_argument("--name", default="fewshot_glyphs_seeds")
    args = ap.parse_args()
    runs = {}
    for i, name in enumerate(args.runs):
        payload = json.loads((RESULTS / f"{name}.json").read_text())
        payload["seed"] = args.seeds[i] if args.seeds else i
        runs[name] = payload
    rows = summarise(runs)
    table = []
    for r in rows:
        per = ", ".join(f"{100 * x['accuracy']:.1f}" for x in r["runs"])
        spread = "" if r["std"] is None else f" ± {100 * r['std']:.1f}"
        table.append([r["method"], f"{r['shots']}-shot", f"{100 * r['mean']:.1f}{spread}",
                      r["seeds"], per])
    notes = ("Mean ± standard deviation across seeds (each seed: its own drawings, base/"
             "validation class split, meta-training and 600 evaluation episodes; the per-seed "
             "95% episode intervals are in the per-seed files). Per-seed accuracies in the "
             "order of the runs: " + ", ".join(f"{n} (seed {p['seed']})" for n, p in
                                               runs.items()) + ". Sizes as in each run's "
             "file (2 epochs x 300 meta-training episodes, Conv-4 32 channels, 28 px; the "
             "rows named ', 5 epochs': 5 epochs).")
    write_results(args.name, {"machine": machine(), "runs": list(runs), "rows": rows}, table,
                  ["method", "setting", "accuracy (%)", "seeds", "per seed"], notes)


if __name__ == "__main__":
    main()
