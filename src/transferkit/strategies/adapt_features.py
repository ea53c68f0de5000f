"""Domain adaptation on frozen features, in seconds: classic CORAL (whiten the source
features, recolour them with the target's covariance), instance weights from a domain
classifier's density ratio, and TrAdaBoost (boosting that lowers the weight of source items
the few labelled target items disagree with)."""

from __future__ import annotations

import math

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from transferkit.heads import Head, linear_vote_head


def _sqrtm(c: np.ndarray, inverse: bool = False) -> np.ndarray:
    vals, vecs = np.linalg.eigh(c)
    vals = np.clip(vals, 1e-12, None)
    return (vecs * (vals ** (-0.5 if inverse else 0.5))) @ vecs.T


def coral_transform(source: np.ndarray, target: np.ndarray, eps: float = 1.0
                    ) -> np.ndarray:
    """Source features re-coloured to the target's second-order statistics (Sun et al.,
    "Return of frustratingly easy domain adaptation"): centre, whiten with C_s + eps I,
    colour with C_t + eps I, move to the target's mean. Features are standardised jointly
    first so ``eps`` (the paper's 1) is on a known scale."""
    xs, xt = np.asarray(source, np.float64), np.asarray(target, np.float64)
    if xs.shape[1] != xt.shape[1]:
        raise ValueError(f"source features have {xs.shape[1]} dimensions, target "
                         f"{xt.shape[1]}")
    scale = StandardScaler().fit(np.vstack([xs, xt]))
    s, t = scale.transform(xs), scale.transform(xt)
    sc, tc = s - s.mean(0), t - t.mean(0)
    basis = None
    if s.shape[1] > len(s) + len(t):  # more dimensions than items: work in the data's span,
        both = np.vstack([sc, tc])  # outside it both covariances are eps I and cancel
        lam, vecs = np.linalg.eigh(both @ both.T)  # the Gram matrix: items x items
        keep = lam > lam.max() * 1e-10
        basis = both.T @ (vecs[:, keep] / np.sqrt(lam[keep]))  # orthonormal columns
        sc, tc = sc @ basis, tc @ basis
    d = sc.shape[1]
    cs = sc.T @ sc / max(1, len(sc) - 1) + eps * np.eye(d)
    ct = tc.T @ tc / max(1, len(tc) - 1) + eps * np.eye(d)
    moved = sc @ _sqrtm(cs, inverse=True) @ _sqrtm(ct)
    if basis is not None:
        moved = moved @ basis.T
    return scale.inverse_transform(moved + t.mean(0)).astype(np.float32)


def density_ratio_weights(source: np.ndarray, target: np.ndarray, seed: int = 0,
                          clip: tuple[float, float] = (0.05, 20.0)
                          ) -> tuple[np.ndarray, dict[str, float]]:
    """Per-source-item weights p(target | x) / p(source | x) x n_source / n_target from a
    logistic-regression domain classifier, each item scored by a classifier that did not
    see it (5 folds); clipped to ``clip`` and scaled to mean 1. Also returns the domain
    classifier's held-out accuracy, the weights' effective sample size (Kish: how many
    equally weighted items they are worth) and its share of the source."""
    from sklearn.model_selection import StratifiedKFold

    xs, xt = np.asarray(source, np.float64), np.asarray(target, np.float64)
    x = StandardScaler().fit_transform(np.vstack([xs, xt]))
    d = np.r_[np.zeros(len(xs)), np.ones(len(xt))]
    p_target = np.zeros(len(x))
    folds = StratifiedKFold(n_splits=min(5, len(xs), len(xt)), shuffle=True,
                            random_state=seed)
    for a, b in folds.split(x, d):
        clf = LogisticRegression(C=0.1, max_iter=2000).fit(x[a], d[a])
        p_target[b] = clf.predict_proba(x[b])[:, 1]
    acc = float(((p_target > 0.5) == d).mean())
    ps = np.clip(p_target[:len(xs)], 1e-6, 1 - 1e-6)
    w = ps / (1 - ps) * len(xs) / len(xt)
    w = np.clip(w, *clip)
    w = w / w.mean()
    ess = float(w.sum() ** 2 / (w ** 2).sum())
    return w, {"domain_classifier_accuracy": acc, "effective_sample_size": ess,
               "effective_sample_share": ess / len(w)}


class TrAdaBoost:
    """TrAdaBoost for several classes (Dai et al. 2007, with SAMME's multi-class step):
    logistic regressions fitted on weighted source + labelled target items (the target's
    share of the weight starts at one half, however few its items); each round
    lowers the weight of source items the model gets wrong (they look unlike the target)
    and raises that of target items it gets wrong. Predicts with the second half of the
    rounds, weighted by their target accuracy."""

    def __init__(self, rounds: int = 20, C: float = 1.0, seed: int = 0) -> None:
        if rounds < 2:
            raise ValueError(f"TrAdaBoost needs at least 2 rounds, got {rounds}")
        self.rounds, self.C, self.seed = int(rounds), float(C), seed

    def fit(self, xs: np.ndarray, ys: np.ndarray, xt: np.ndarray, yt: np.ndarray,
            n_classes: int) -> TrAdaBoost:
        """Fit on source (xs, ys) and labelled target (xt, yt) features."""
        self.scaler_ = StandardScaler().fit(np.vstack([xs, xt]))
        x = self.scaler_.transform(np.vstack([xs, xt]))
        y = np.r_[ys, yt]
        ns, k = len(xs), int(n_classes)
        # the few target items start with as much weight in all as the source items
        w = np.r_[np.full(ns, 0.5 / ns), np.full(len(xt), 0.5 / len(xt))]
        beta_src = 1.0 / (1.0 + math.sqrt(2.0 * math.log(ns) / self.rounds))
        self.models_: list[LogisticRegression] = []
        self.alphas_: list[float] = []
        for _ in range(self.rounds):
            clf = LogisticRegression(C=self.C, max_iter=2000, random_state=self.seed)
            clf.fit(x, y, sample_weight=w / w.sum() * len(x))
            wrong = self._predict_one(clf, x, k) != y
            wt = w[ns:]
            err = float((wt * wrong[ns:]).sum() / wt.sum())
            err = min(max(err, 1e-6), 1.0 - 1.0 / k - 1e-6)
            alpha = math.log((1.0 - err) / err) + math.log(k - 1.0)
            w[:ns] *= np.where(wrong[:ns], beta_src, 1.0)
            w[ns:] *= np.where(wrong[ns:], math.exp(alpha), 1.0)
            w /= w.sum()
            self.models_.append(clf)
            self.alphas_.append(alpha)
        self.n_classes_ = k
        return self

    def head(self) -> Head:
        """The later rounds' vote as a transferkit head (saves, loads, exports)."""
        half = len(self.models_) // 2
        return linear_vote_head(self.models_[half:], self.alphas_[half:], self.scaler_.mean_,
                                self.scaler_.scale_, self.n_classes_)

    @staticmethod
    def _predict_one(clf: LogisticRegression, x: np.ndarray, k: int) -> np.ndarray:
        return clf.classes_[clf.predict_proba(x).argmax(1)]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class scores of the later rounds' vote (rows sum to 1)."""
        xs = self.scaler_.transform(x)
        half = len(self.models_) // 2
        votes = np.zeros((len(x), self.n_classes_))
        for clf, a in zip(self.models_[half:], self.alphas_[half:], strict=True):
            p = np.zeros((len(x), self.n_classes_))
            p[:, clf.classes_] = clf.predict_proba(xs)
            votes += a * p
        return votes / votes.sum(axis=1, keepdims=True).clip(1e-12)
