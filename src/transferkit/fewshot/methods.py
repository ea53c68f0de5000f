"""Classifying one few-shot episode from features: nearest prototype (cosine or squared
Euclidean), and the linear-probe baseline of "Rethinking few-shot image classification"
(Tian et al. 2020: L2-normalised features, logistic regression on the support set).

Each method maps (support features, support labels 0..N-1, query features, N) to query
class scores [Q, N]; the episode runner in :mod:`transferkit.fewshot.episodes` draws the
episodes and scores them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

EpisodeMethod = Callable[[np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)


def prototypes(support: np.ndarray, labels: np.ndarray, ways: int) -> np.ndarray:
    """Class means of the support features, [ways, d]."""
    out = np.zeros((ways, support.shape[1]), dtype=np.float64)
    for c in range(ways):
        rows = support[labels == c]
        if len(rows) == 0:
            raise ValueError(f"episode class {c} has no support item")
        out[c] = rows.mean(axis=0)
    return out


def protonet_cosine(support: np.ndarray, labels: np.ndarray, query: np.ndarray,
                    ways: int) -> np.ndarray:
    """Cosine similarity of each query to each class mean of the support."""
    return _l2(np.asarray(query, np.float64)) @ _l2(prototypes(support, labels, ways)).T


def protonet_euclidean(support: np.ndarray, labels: np.ndarray, query: np.ndarray,
                       ways: int) -> np.ndarray:
    """Negative squared Euclidean distance of each query to each class mean (ProtoNet)."""
    p = prototypes(support, labels, ways)
    q = np.asarray(query, np.float64)
    return -((q[:, None, :] - p[None, :, :]) ** 2).sum(axis=2)


def support_logreg(support: np.ndarray, labels: np.ndarray, query: np.ndarray, ways: int,
                   C: float = 1.0) -> np.ndarray:
    """Tian et al.'s baseline: logistic regression on the L2-normalised support features;
    query class probabilities."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(C=C, max_iter=1000).fit(_l2(support), labels)
    scores = np.zeros((len(query), ways))
    scores[:, clf.classes_] = clf.predict_proba(_l2(query))
    return scores


#: episode methods on frozen features, by name (distinct from the strategies': a strategy
#: ``protonet`` trains the backbone on episodes, which is the episode method
#: ``protonet-trained``; ``prototypes`` only averages frozen features)
FEATURE_METHODS: dict[str, EpisodeMethod] = {
    "prototypes": protonet_cosine,  # cosine: 3 points better at 1-shot on grey images
    "prototypes-euclidean": protonet_euclidean,
    "support-probe": support_logreg,
}

#: the names these methods had before they were told apart from the strategies
ALIASES = {"protonet": "prototypes", "protonet-euclidean": "prototypes-euclidean",
           "probe": "support-probe", "finetune": "support-finetune"}


def canonical(name: str) -> str:
    """The episode method's current name (an earlier name is still understood)."""
    return ALIASES.get(name, name)
