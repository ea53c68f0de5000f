"""`transferkit fewshot`: evaluate few-shot methods on seeded N-way K-shot episodes of a
labelled set (its classes are the novel classes), optionally after training on base classes;
write metrics.json and a report.

Methods: ``prototypes`` (cosine to the class means of frozen features),
``prototypes-euclidean``, ``support-probe`` (logistic regression on the L2-normalised support
features), ``support-finetune`` (the top stage and a prototype-initialised head fine-tuned on
each support set) on the pretrained backbone (their earlier names ``protonet``,
``protonet-euclidean``, ``probe``, ``finetune`` are still understood); with
``base`` data: ``protonet-trained`` (the backbone trained on base-class episodes first),
``maml``, ``fomaml`` (first-order), ``metasgd`` (a learned per-weight step size) and
``lstm-optimizer`` (a coordinate-wise LSTM that outputs each weight's update, Andrychowicz et
al.) — meta-trained on base-class episodes of the frozen features.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from transferkit._io import write_json_atomic
from transferkit.backbones import Backbone, load_backbone
from transferkit.backbones.modality import IMAGE_BACKBONE, check_modality
from transferkit.data.dataset import Dataset, holdout_split
from transferkit.errors import DataError
from transferkit.fewshot import FEATURE_METHODS, EpisodeResult, canonical, run_episodes
from transferkit.runs.data import one_dataset
from transferkit.runs.rundir import HasReport, preflight, run_directory

BASE_METHODS = ("protonet-trained", "maml", "fomaml", "metasgd", "lstm-optimizer")
METHODS = (*FEATURE_METHODS, "support-finetune", *BASE_METHODS)


@dataclass
class FewShotResult(HasReport):
    """Each method's episode results, the metrics written and where."""

    results: dict[str, EpisodeResult]
    metrics: dict[str, Any]
    out: Path
    seconds: float


def parse_methods(methods: str | Sequence[str]) -> list[str]:
    """Method names (comma-separated or a list), checked."""
    names = [canonical(m.strip()) for m in (methods.split(",") if isinstance(methods, str)
                                            else methods) if m.strip()]
    bad = [m for m in names if m not in METHODS]
    if bad or not names:
        raise ValueError(f"--method: unknown {', '.join(map(repr, bad)) or '(none)'}; choose "
                         f"from {', '.join(METHODS)}")
    return names


def fewshot_run(data: str | Path | Dataset, out: str | Path, *,
                backbone: str | Backbone = IMAGE_BACKBONE,
                methods: str | Sequence[str] = "prototypes", ways: int = 5, shots: int = 1,
                queries: int = 15, episodes: int = 600, base: str | Path | Dataset | None = None,
                seed: int = 0, image_size: int | None = None, cache: Any = True,
                epochs: int | None = None, finetune_episodes: int | None = None,
                log: Callable[[str], None] | None = None, progress: Any = None,
                overwrite: bool = False) -> FewShotResult:
    """Evaluate ``methods`` on ``episodes`` seeded episodes of ``data``; write ``out``."""
    names = parse_methods(methods)
    preflight(out, overwrite=overwrite, what="few-shot evaluation", inputs=[data, base])
    say = log or (lambda _m: None)
    _check_options(names, base=base, epochs=epochs, finetune_episodes=finetune_episodes)
    novel = one_dataset(data, "DATA")
    base_ds = one_dataset(base, "--base")
    if base_ds is not None:
        both = sorted(set(novel.class_names) & set(base_ds.class_names))
        if both:
            say(f"note: {len(both)} class(es) are in both the base and the evaluation data "
                f"({', '.join(both[:5])}): on those the episodes are not truly few-shot")
    for ds in (novel, base_ds):
        if ds is not None:
            check_modality(backbone, ds.modality, ds.source)
    bb = load_backbone(backbone) if not isinstance(backbone, Backbone) else backbone
    if image_size is not None:
        bb = bb.with_image_size(int(image_size))
    t0 = time.perf_counter()
    out = Path(out)
    with run_directory(out, overwrite=overwrite, what="few-shot evaluation",
                       inputs=[data, base]) as where:
        results: dict[str, EpisodeResult] = {}
        setting = {"ways": ways, "shots": shots, "queries": queries, "seed": seed,
                   "class_names": novel.class_names}
        feats = None
        for m in names:
            say(f"{m}: {episodes if m != 'support-finetune' else finetune_episodes or episodes} "
                f"episodes, {ways}-way {shots}-shot, {queries} queries per class")
            n_ep = (finetune_episodes or episodes) if m == "support-finetune" else episodes
            tp = time.perf_counter()
            if m in FEATURE_METHODS and feats is None:
                feats = bb.extract(novel, cache=cache, progress=progress).features
            x, method = (feats, m) if m in FEATURE_METHODS else _prepared(
                m, bb, base_ds, novel, ways=ways, shots=shots, seed=seed, epochs=epochs,
                cache=cache, log=log)
            res = run_episodes(x, novel.labels, method=method, ways=ways, shots=shots,
                               queries=queries, episodes=n_ep, seed=seed,
                               class_names=novel.class_names, keep_predictions=n_ep)
            res.method = m
            res.prepare_seconds = time.perf_counter() - tp - res.seconds
            results[m] = res
            say(f"{m}: accuracy {res.mean:.4f} ± {res.ci95:.4f} (95% interval), "
                f"{res.seconds:.1f} s for the episodes")
        metrics = {"data": novel.source, "backbone": bb.name,
                   "base": None if base_ds is None else base_ds.source, **setting,
                   "methods": {m: r.summary() for m, r in results.items()},
                   "seconds": round(time.perf_counter() - t0, 2)}
        write_json_atomic(where / "metrics.json", metrics)
        _report(where, novel, results, metrics)
    return FewShotResult(results, metrics, out, time.perf_counter() - t0)


def _check_options(names: list[str], *, base: Any, epochs: int | None,
                   finetune_episodes: int | None) -> None:
    """Refuse a method without the base data it trains on, or an option no chosen method
    uses (none is silently ignored)."""
    if any(m in BASE_METHODS for m in names) and base is None:
        raise ValueError(f"{', '.join(m for m in names if m in BASE_METHODS)} train on base "
                         f"classes first: give --base DATA")
    unused = [opt for opt, val, users in (("--epochs", epochs, BASE_METHODS),
                                          ("--finetune-episodes", finetune_episodes,
                                           ("support-finetune",)))
              if val is not None and not any(m in users for m in names)]
    if unused:
        raise ValueError(f"{unused[0]} is not used by the chosen method(s) "
                         f"({', '.join(names)}); leave it out (no option is silently ignored)")


def _prepared(m: str, bb: Backbone, base: Dataset | None, novel: Dataset, *, ways: int,
              shots: int, seed: int, epochs: int | None, cache: Any,
              log: Callable[[str], None] | None) -> tuple[Any, Any]:
    """(the novel data's representation, the episode method) of a method that trains first:
    fine-tuning on each support set, or meta-training on the base classes."""
    if m == "support-finetune":
        return _support_finetune(bb, novel, seed, cache)
    if m == "protonet-trained":
        return _protonet_trained(bb, base, novel, ways, shots, seed, epochs, cache,
                                 log), "prototypes"
    return _meta_trained(m, bb, base, novel, ways, shots, seed, epochs, cache, log)


def _support_finetune(bb: Backbone, novel: Dataset, seed: int, cache: Any) -> tuple[Any, Any]:
    from transferkit.fewshot.support_finetune import SupportFineTune
    from transferkit.train.trunk import Trunk

    if bb.modality != "image" or bb.sequential_stages() is None:
        raise ValueError(f"finetune episodes need an image backbone with sequential stages; "
                         f"{bb.name!r} has none (use protonet or probe)")
    own = copy.deepcopy(bb)
    trunk = Trunk(own, cache=cache, train_bn=False)
    n_freeze = max(0, len(trunk.stages) - 1)
    view = trunk.views({"novel": novel}, n_freeze, label="finetune")
    x = view.streams["novel"]
    acts = x.x.cpu().numpy() if hasattr(x, "x") else np.stack([x[i][0].numpy()
                                                               for i in range(len(x))])
    return acts, SupportFineTune(view.module, seed=seed)


def _base_queries(base: Dataset, ways: int, shots: int, most: int) -> int:
    """Queries per class of a training episode on ``--base``: up to ``most``, as many as the
    ``ways`` largest base classes allow beside their ``shots`` (an error when none)."""
    counts = sorted((n for n in base.class_counts().values() if n), reverse=True)
    room = (counts[min(ways, len(counts)) - 1] - shots) if counts else 0
    if room < 1:
        raise DataError(f"{base.source} (--base): a {ways}-way {shots}-shot training episode "
                        f"needs {ways} classes with at least {shots + 1} items each")
    return min(most, room)


def _protonet_trained(bb: Backbone, base: Dataset | None, novel: Dataset, ways: int,
                      shots: int, seed: int, epochs: int | None, cache: Any,
                      log: Callable[[str], None] | None) -> np.ndarray:
    from transferkit.strategies.protonet import ProtoNetClassifier

    assert base is not None
    n_ways = min(ways, len(base.class_names))
    est = ProtoNetClassifier(backbone=bb, ways=n_ways, shots=shots,
                             queries=_base_queries(base, n_ways, shots, 10),
                             epochs=epochs or 10, seed=seed, cache=cache,
                             log=log).fit(base)
    return est.backbone_.extract(novel, cache=False).features


def _meta_trained(method: str, bb: Backbone, base: Dataset | None, novel: Dataset, ways: int,
                  shots: int, seed: int, epochs: int | None, cache: Any,
                  log: Callable[[str], None] | None) -> tuple[np.ndarray, Any]:
    import torch

    from transferkit.fewshot.learned_opt import LSTMOptimizerMAML
    from transferkit.fewshot.meta import MAML, feature_mlp
    from transferkit.train import EpisodicPlan, TensorData, TrainConfig, Trainer
    from transferkit.train.plan import mix

    assert base is not None
    train, val, _ = holdout_split(base, 0.2, seed=mix(seed, "holdout"))
    ftrain = bb.extract(train, cache=cache).features
    fval = None if val is None else bb.extract(val, cache=cache).features
    net = feature_mlp(ftrain.shape[1], ways, seed=seed)
    if method == "lstm-optimizer":
        maml: MAML = LSTMOptimizerMAML(net, inner_steps=5, inner_lr=0.1, val_shots=shots,
                                       seed=seed)
    else:
        maml = MAML(net, inner_steps=5, inner_lr=0.1 if method != "metasgd" else 0.05,
                    first_order=method == "fomaml", learn_lr=method == "metasgd",
                    val_shots=shots)
    plan = EpisodicPlan("train", ways=ways, shots=shots,
                        queries=_base_queries(train, ways, shots, 15), episodes=200)
    trainer = Trainer(TrainConfig(epochs=epochs or 10, lr=1e-3, seed=seed, batch_size=1,
                                  precision="32"), label=method, log=log)
    trainer.fit(maml, {"train": TensorData(torch.as_tensor(ftrain), train.labels)},
                None if fval is None else TensorData(torch.as_tensor(fval), val.labels),
                plan=plan)
    feats = bb.extract(novel, cache=cache).features
    return feats, episode_adapter(maml)


def episode_adapter(maml: Any) -> Callable[..., np.ndarray]:
    """An episode method (support, labels, queries, ways -> query logits) that adapts
    ``maml`` on the model's own device; only the logits come back as numpy."""
    import torch

    dev = next(maml.parameters()).device

    def adapt(s: np.ndarray, sl: np.ndarray, q: np.ndarray, n: int) -> np.ndarray:
        t = [torch.as_tensor(a, device=dev) for a in (s, sl, q)]
        return maml.predict_episode(t[0].float(), t[1], t[2].float()).cpu().numpy()

    return adapt


def _report(where: Path, novel: Dataset, results: dict[str, EpisodeResult],
            metrics: dict[str, Any]) -> None:
    from transferkit.data.images import thumbnail_image
    from transferkit.evaluation import write_report
    from transferkit.evaluation.episode_plots import episode_histogram_png, episode_montage_png
    from transferkit.evaluation.metrics import classification_metrics

    first = next(iter(results.values()))
    y_true, y_pred, items = [], [], []
    for ep, pred in zip(first.episodes, first.predictions, strict=False):
        q, s = ep["query"], ep["support"]
        local = {int(lab): int(novel.labels[i]) for i, lab in zip(s.indices, s.labels,
                                                                   strict=True)}
        y_true += [int(novel.labels[i]) for i in q.indices]
        y_pred += [local[int(p)] for p in pred]
        items += [novel.items[i] for i in q.indices]
    names = list(novel.class_names)
    m = classification_metrics(y_true, y_pred, None, names)
    figures = [{"title": "Accuracy per episode",
                "png": episode_histogram_png({k: r.accuracies for k, r in results.items()}),
                "note": f"{len(first.accuracies)} episodes per method"}]
    ep = first.episodes[0]
    s, q = ep["support"], ep["query"]
    local_names = [names[int(novel.labels[s.indices[list(s.labels).index(c)]])]
                   for c in range(first.ways)]
    figures.append({"title": f"Episode 1 ({first.method})", "png": episode_montage_png(
        [novel.items[i] for i in s.indices], list(s.labels),
        [novel.items[i] for i in q.indices], list(q.labels), list(first.predictions[0]),
        local_names, thumbnail_image)})
    table = {"title": "Methods on the same episodes", "columns": [
        "method", "accuracy", "95% interval", "episodes", "episodes (s)",
        "preparation (s)"], "rows": [
        [k, f"{r.mean:.4f}", f"± {r.ci95:.4f}", len(r.accuracies), f"{r.seconds:.1f}",
         f"{r.prepare_seconds:.1f}"] for k, r in results.items()],
        "note": "the confusion matrix, per-class report and gallery pool the queries of "
                f"every episode of the first method ({first.method})"}
    info = {k: metrics[k] for k in ("data", "backbone", "base", "ways", "shots", "queries",
                                    "seed", "seconds")}
    write_report(where, title=f"Few-shot: {first.ways}-way {first.shots}-shot on "
                 f"{Path(str(novel.source)).name}", metrics=m, y_true=y_true, y_pred=y_pred,
                 proba=None, class_names=names, items=items, item_kind=novel.modality,
                 load_item=thumbnail_image if novel.modality == "image" else None, info=info,
                 tables=[table], figures=figures)
