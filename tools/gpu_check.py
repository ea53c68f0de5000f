"""Run the training paths on a CUDA GPU once (CI has none): mixed precision (bf16 and fp16 with
loss scaling) in the one Trainer, domain adaptation, episodic and meta-training, multi-task
gradient aggregation. Prints one line per check with its result and time; exits 1 on a
failure. Each check is small (seconds on a GPU).

Run: python tools/gpu_check.py   (PYTHONPATH=src when transferkit is not installed)
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable

import numpy as np
import torch


def check(name: str, fn: Callable[[], str]) -> bool:
    t0 = time.perf_counter()
    try:
        detail = fn()
    except Exception:
        print(f"FAIL {name} ({time.perf_counter() - t0:.1f} s)")
        traceback.print_exc()
        return False
    print(f"ok   {name}: {detail} ({time.perf_counter() - t0:.1f} s)", flush=True)
    return True


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}, bf16 "
          f"{torch.cuda.is_bf16_supported()}")
    from transferkit.data import fashion_mnist_sample, from_folder, make_splits

    splits = make_splits(from_folder(fashion_mnist_sample()), test_fraction=0.5, seed=0)

    def acc(est, ds) -> float:
        return float((est.predict_proba(ds).argmax(1) == ds.labels).mean())

    def finetune(precision: str) -> Callable[[], str]:
        def run() -> str:
            from transferkit.strategies import FineTuneClassifier

            est = FineTuneClassifier(freeze=4, head_epochs=1, epochs=3, image_size=96,
                                     precision=precision, fallback="none", seed=0,
                                     cache=False, progress=False).fit(splits.train)
            a = acc(est, splits.test)
            assert a > 0.6, a
            return f"test accuracy {a:.3f}"
        return run

    def adapt() -> str:
        from transferkit.data.samples import digits_to_mnist
        from transferkit.strategies import DomainAdaptClassifier

        s, t, tt = digits_to_mnist(0)
        est = DomainAdaptClassifier(backbone="lenet", method="dann+self-train", epochs=3,
                                    seed=0, cache=False, progress=False).fit(
            s, X_target=t, X_target_test=tt)
        return f"target accuracy {acc(est, tt):.3f}, kept {est.kept_}"

    def fewshot() -> str:
        from transferkit.data import Dataset
        from transferkit.fewshot_run import fewshot_run

        ds = splits.train
        novel = ["sandal", "shirt", "sneaker", "bag", "ankle_boot"]

        def part(names: list[str]) -> Dataset:
            keep = [i for i, y in enumerate(ds.labels) if ds.class_names[y] in names]
            sub = ds.subset(keep)
            return Dataset(items=sub.items, labels=[names.index(sub.class_names[y])
                                                    for y in sub.labels],
                           class_names=names, source="part")

        base = part([c for c in ds.class_names if c not in novel])
        import tempfile

        res = fewshot_run(part(novel), tempfile.mkdtemp() + "/fs", methods=
                          "protonet,protonet-trained,maml,metasgd", base=base, shots=5,
                          queries=10, episodes=40, epochs=1, image_size=96, seed=0)
        return ", ".join(f"{k} {r.mean:.3f}" for k, r in res.results.items())

    def multitask() -> str:
        from transferkit.data import Dataset
        from transferkit.data.dataset import stratified_split
        from transferkit.multitask import MultiTaskLearner

        fine = splits.train
        coarse = Dataset(items=fine.items, labels=[int(y >= 5) for y in fine.labels],
                         class_names=["first", "second"], source="coarse")
        tr, te = {}, {}
        for name, d in (("fine", fine), ("coarse", coarse)):
            tr[name], te[name] = stratified_split(d, 0.25, 0, what="test")
        out = []
        for weighting in ("upgrad", "uncertainty"):
            fit = MultiTaskLearner(weighting=weighting, epochs=2, image_size=96,
                                   baselines=False, seed=0).fit(tr, te)
            out.append(f"{weighting}: fine {fit.joint['fine'].test_accuracy:.3f}")
        return "; ".join(out)

    checks = [("finetune, bf16 autocast", finetune("auto")),
              ("finetune, fp16 + GradScaler", finetune("16")),
              ("adapt dann+self-train (lenet)", adapt),
              ("fewshot protonet/maml/metasgd", fewshot),
              ("multitask upgrad / uncertainty", multitask)]
    results = [check(n, f) for n, f in checks]
    print(f"{sum(results)} of {len(results)} checks passed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    sys.exit(main())
