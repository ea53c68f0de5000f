"""Would a label-free signal have caught the frozen-feature rows of the icons adapt benchmark
that lost to source-only? For realistic -> flat, the frozen path's source-only, coral and
reweight models: target accuracy beside the label-free scores the network path's guard reads
(held-out source accuracy, the target predictions' information-maximisation score and class
diversity) and reweighting's own diagnostics (domain-classifier accuracy, effective sample
share). Same data, backbone and seed as ``case_icons_adapt.py``.

Run: nice -n 10 .venv/bin/python benchmarks/case_icons_adapt_guard.py
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from _common import machine, write_results
from case_icons_adapt import build, pair_data
from transferkit.strategies import DomainAdaptClassifier

DATA = Path("/tmp/transferkit-icons-adapt")


def main() -> None:
    build(DATA)
    source, target = pair_data(DATA, "realistic", "flat")
    rows = []
    for method in ("source-only", "coral", "reweight"):
        est = DomainAdaptClassifier(backbone="efficientnet_lite0", method=method,
                                    freeze="all", image_size=128, seed=0, progress=False)
        est.fit(source, X_target=replace(target, labels=None))
        acc = float((est.predict_proba(target).argmax(1) == target.labels).mean())
        s = est.summary_
        rows.append({"method": method, "target_accuracy": acc,
                     **{k: s.get(k) for k in ("source_val_accuracy", "target_im",
                                              "target_entropy", "target_diversity",
                                              "domain_classifier_accuracy",
                                              "effective_sample_share")}})
        print(rows[-1], flush=True)
    cols = ["target_accuracy", "source_val_accuracy", "target_im", "target_diversity",
            "domain_classifier_accuracy", "effective_sample_share"]
    table = [[r["method"], *("" if r[c] is None else f"{r[c]:.3f}" for c in cols)]
             for r in rows]
    write_results("case_icons_adapt_guard", {"pair": "realistic->flat", "rows": rows,
                                             "machine": machine()}, table,
                  ["method (frozen, realistic->flat)", *cols],
                  "EfficientNet-Lite0 at 128 px, seed 0; the target labels only score. "
                  f"Machine: {machine()}")


if __name__ == "__main__":
    main()
