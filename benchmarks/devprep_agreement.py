"""How much the GPU path's choices change the features, measured on the CPU.

On a GPU, extraction resizes, crops and normalises images on the device (torch's antialiased
bicubic in float, not PIL's in uint8) and runs in bf16 autocast. Both change the features a
little; this measures how much, against the CPU path's fp32 features with the PIL transform
(what every earlier result used): mean and minimum cosine per image, and the accuracy of a
logistic-regression probe (5-fold cross-validation, the same folds) on each set of features.

Data: the 600 bundled Fashion-MNIST test images (28 px grey, upsampled to 224 px: the
largest resampling factor, so the worst case for the resize difference), and 300 JPEG
photos (500x375 crops of scikit-image's sample photographs, as in gpu_throughput.py).

Run: .venv/bin/python benchmarks/devprep_agreement.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write_results
from gpu_throughput import cosine, make_jpegs, prepare


def features(ds, preprocess: str, precision: str) -> np.ndarray:
    """Lite0 features of ``ds`` on the CPU with that preprocessing path and precision."""
    from transferkit.backbones.timm_backbone import bundled_efficientnet_lite0

    os.environ["TRANSFERKIT_PREPROCESS"] = preprocess
    try:
        bb = bundled_efficientnet_lite0().place("cpu", precision)
        return bb.extract(ds, cache=False).features
    finally:
        os.environ.pop("TRANSFERKIT_PREPROCESS", None)


def probe_cv(f: np.ndarray, y: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    return float(cross_val_score(clf, f, y, cv=folds).mean())


def main() -> None:
    from transferkit.data import fashion_mnist_sample, from_folder

    root = Path(tempfile.mkdtemp())
    prepare(root, 1)
    sets = {"600 Fashion-MNIST PNGs (28 px)": from_folder(fashion_mnist_sample()),
            "300 JPEG photos (500x375)": from_folder(make_jpegs(root / "photos",
                                                                root / "jpegs", 300))}
    rows, payload = [], {"machine": machine()}
    for name, ds in sets.items():
        y = np.asarray(ds.labels)
        ref = features(ds, "host", "32")
        payload[name] = {"reference_probe_accuracy": probe_cv(ref, y)}
        rows.append([name, "PIL transform, fp32 (the reference)", "1.0000", "1.0000",
                     f"{payload[name]['reference_probe_accuracy']:.3f}"])
        for label, prep, prec in (("device-side preprocessing, fp32", "device", "32"),
                                  ("PIL transform, bf16 autocast", "host", "bf16"),
                                  ("device-side preprocessing, bf16 (the GPU default)",
                                   "device", "bf16")):
            f = features(ds, prep, prec)
            cos = (ref * f).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(f, axis=1)
            acc = probe_cv(f, y)
            payload[name][label] = {"cosine_mean": cosine(ref, f),
                                    "cosine_min": float(cos.min()), "probe_accuracy": acc}
            rows.append([name, label, f"{cosine(ref, f):.4f}", f"{cos.min():.4f}",
                         f"{acc:.3f}"])
    write_results("devprep_agreement", payload, rows,
                  ["data", "features", "cosine to reference (mean)", "(min)",
                   "probe accuracy (5-fold CV)"],
                  notes="EfficientNet-Lite0 at 224 px, computed on the CPU (bf16 via CPU "
                        "autocast). The GPU path's choices, isolated from the GPU itself.")


if __name__ == "__main__":
    main()
