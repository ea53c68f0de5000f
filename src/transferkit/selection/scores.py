"""Transferability scores: how well a pretrained model's features (or its source-task
predictions) will serve a labelled target task, computed without training anything.

Each is a plain function ``(features or source probabilities, labels) -> float``; higher is
better. Bad input (one class, fewer items than classes, non-finite values) is a clear error.

- :func:`logme` (You et al. 2021): the log marginal likelihood (evidence) per item of a
  Bayesian linear regression from features to each one-hot target column, with its prior
  and noise precisions maximised. The evidence here is exact: the fixed-point code of the
  reference implementation drops the -(D-k)/2 log alpha term when the dimension D exceeds
  the item count, which over-rewards wide features on small data.
- :func:`leep` (Nguyen et al. 2020): the log expected empirical prediction of the source
  classifier's outputs through the empirical target-given-source conditional.
- :func:`nce` (Tran et al. 2019): the negative conditional entropy of the target labels given
  the source classifier's hard predictions.
- :func:`hscore` (Bao et al. 2019), with shrinkage (Ibrahim et al. 2022): tr(Cov(f)^-1
  Cov(E[f|y])), the covariance shrunk by Ledoit-Wolf.
- :func:`transrate` (Huang et al. 2022): the coding rate of the features minus the mean coding
  rate within each class.
"""

from __future__ import annotations

import math

import numpy as np

from transferkit.errors import DataError


def _check(x: np.ndarray, y: np.ndarray, what: str = "features") -> tuple[np.ndarray,
                                                                          np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y).reshape(-1)
    if x.ndim != 2 or len(x) != len(y):
        raise DataError(f"{what} must be [items, dims] with one label per item; got "
                        f"{x.shape} and {len(y)} labels")
    if not np.isfinite(x).all():
        raise DataError(f"{what} hold non-finite values (NaN or inf)")
    classes = np.unique(y)
    if len(classes) < 2:
        raise DataError("a transferability score needs at least two classes")
    if len(y) <= len(classes):
        raise DataError(f"a transferability score needs more items ({len(y)}) than classes "
                        f"({len(classes)})")
    return x, np.searchsorted(classes, y)


def logme_evidence(f: np.ndarray, t: np.ndarray, alpha: float, beta: float) -> float:
    """log p(t | F, alpha, beta) of Bayesian linear regression t = F w + noise,
    w ~ N(0, alpha^-1 I), noise ~ N(0, beta^-1): the direct D x D computation."""
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ t)
    _, logdet = np.linalg.slogdet(a)
    return float(n / 2 * math.log(beta) + d / 2 * math.log(alpha) - n / 2 * math.log(2 * math.pi)
                 - beta / 2 * ((f @ m - t) ** 2).sum() - alpha / 2 * (m @ m) - logdet / 2)


def _logme_column(u: np.ndarray, s2: np.ndarray, t: np.ndarray, n: int, d: int,
                  iters: int = 100) -> tuple[float, float, float]:
    """(evidence / n, alpha, beta) for one target column, from F's SVD (U, sigma^2)."""
    ut = u.T @ t  # projections on the r singular directions
    t_out = max(float(t @ t - ut @ ut), 0.0)  # the part of t outside F's column space
    alpha, beta = 1.0, 1.0
    for _ in range(iters):
        gamma = float((beta * s2 / (alpha + beta * s2)).sum())
        m2 = float((beta ** 2 * s2 * ut ** 2 / (alpha + beta * s2) ** 2).sum())  # |m|^2
        res = float((alpha ** 2 * ut ** 2 / (alpha + beta * s2) ** 2).sum()) + t_out
        new_alpha = gamma / max(m2, 1e-12)
        new_beta = (n - gamma) / max(res, 1e-12)
        done = abs(new_alpha - alpha) / alpha < 1e-5 and abs(new_beta - beta) / beta < 1e-5
        alpha, beta = new_alpha, new_beta
        if done:
            break
    m2 = float((beta ** 2 * s2 * ut ** 2 / (alpha + beta * s2) ** 2).sum())
    res = float((alpha ** 2 * ut ** 2 / (alpha + beta * s2) ** 2).sum()) + t_out
    r = len(s2)
    logdet = float(np.log(alpha + beta * s2).sum()) + (d - r) * math.log(alpha)  # exact
    ev = (n / 2 * math.log(beta) + d / 2 * math.log(alpha) - n / 2 * math.log(2 * math.pi)
          - beta / 2 * res - alpha / 2 * m2 - logdet / 2)
    return ev / n, alpha, beta


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME: the mean over classes of the maximised evidence per item (one-vs-rest 0/1
    targets), exact for any D and N."""
    f, y = _check(features, labels)
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    keep = s > s.max() * 1e-10
    u, s2 = u[:, keep], s[keep] ** 2
    k = int(y.max()) + 1
    return float(np.mean([_logme_column(u, s2, (y == c).astype(np.float64), n, d)[0]
                          for c in range(k)]))


def leep(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """LEEP from the source classifier's probabilities [items, source classes]."""
    p, y = _check(source_probs, labels, "source probabilities")
    if (p < 0).any():
        raise DataError("source probabilities must be >= 0")
    p = p / p.sum(axis=1, keepdims=True).clip(1e-12)
    k = int(y.max()) + 1
    joint = np.stack([p[y == c].sum(axis=0) for c in range(k)]) / len(y)  # [target, source]
    cond = joint / joint.sum(axis=0, keepdims=True).clip(1e-12)  # P(y | z)
    eep = (p @ cond.T)[np.arange(len(y)), y]
    return float(np.log(eep.clip(1e-12)).mean())


def nce(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """NCE: -H(Y | Z), Z the source classifier's most likely class of each item."""
    p, y = _check(source_probs, labels, "source probabilities")
    z = p.argmax(axis=1)
    h = 0.0
    for zv in np.unique(z):
        yz = y[z == zv]
        q = np.bincount(yz) / len(yz)
        q = q[q > 0]
        h += len(yz) / len(y) * float(-(q * np.log(q)).sum())
    return -h


def hscore(features: np.ndarray, labels: np.ndarray, shrinkage: bool = True) -> float:
    """H-score tr(Cov(f)^-1 Cov(E[f|y])); the feature covariance shrunk (Ledoit-Wolf) by
    default, which keeps it invertible and stable when dims rival items."""
    f, y = _check(features, labels)
    f = f - f.mean(axis=0)
    if shrinkage:
        from sklearn.covariance import LedoitWolf

        cov = LedoitWolf(assume_centered=True).fit(f).covariance_
    else:
        cov = f.T @ f / len(f)
    means = np.stack([f[y == c].mean(axis=0) for c in range(int(y.max()) + 1)])
    g = means[y]
    cov_g = g.T @ g / len(f)
    return float(np.trace(np.linalg.pinv(cov, rcond=1e-12) @ cov_g))


def _coding_rate(z: np.ndarray, eps: float) -> float:
    n, d = z.shape
    _, logdet = np.linalg.slogdet(np.eye(d) + z.T @ z / (n * eps))
    return 0.5 * float(logdet)


def transrate(features: np.ndarray, labels: np.ndarray, eps: float = 1e-4) -> float:
    """TransRate: R(Z) - mean over classes of R(Z_c), R the coding rate at distortion eps
    (features centred)."""
    f, y = _check(features, labels)
    z = f - f.mean(axis=0)
    k = int(y.max()) + 1
    return _coding_rate(z, eps) - float(np.mean([_coding_rate(z[y == c], eps)
                                                 for c in range(k)]))


FEATURE_SCORES = {"logme": logme, "hscore": hscore, "transrate": transrate}
SOURCE_SCORES = {"leep": leep, "nce": nce}
