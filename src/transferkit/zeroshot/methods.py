"""Zero-shot classification of image features from class side information.

Each method is fitted on the features and labels of the *seen* classes with a vector per
class (an attribute row, or the embedding of the class's description), and then scores any
classes, seen or not, from their vectors alone:

- :class:`ESZSL` (Romera-Paredes & Torr 2015): the closed-form bilinear map
  V = (X Xᵀ + γI)⁻¹ X Y Sᵀ (S Sᵀ + λI)⁻¹; score(x, c) = xᵀ V s_c.
- :class:`DAP` (Lampinen et al.): one logistic classifier per binary attribute; a class
  scores the log-probability of its attribute signature.
- :class:`RidgeMap`: features mapped by ridge regression onto their class's vector; score =
  cosine similarity (the simple baseline for description embeddings).
- :class:`RankingMap`: a linear map trained with the seed's ranking loss: an image is pulled
  towards its own class vector and pushed from the others by a margin (DeViSE's hinge).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from sklearn.preprocessing import StandardScaler

from transferkit.heads import Head


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True).clip(1e-12)


class ZeroShotMethod(ABC):
    """fit(features, labels, class_vectors of the seen classes) -> self;
    scores(features, class_vectors) -> [n, classes]; ``head(vectors, offsets)``: the
    fitted scorer as a transferkit head over any classes (None when it is not linear)."""

    #: scores are cosine similarities (head: normalise both sides, scale them)
    cosine = False
    logit_scale = 1.0

    @abstractmethod
    def fit(self, x: np.ndarray, y: np.ndarray, vectors: np.ndarray) -> ZeroShotMethod:
        """Learn from seen-class features, labels (0..z-1) and the z seen classes' vectors."""

    @abstractmethod
    def scores(self, x: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """Scores of ``x`` against any classes' ``vectors``, [n, classes]."""

    def projection(self) -> np.ndarray | None:
        """The linear map from standardised features into the class-vector space."""
        return None

    def head(self, vectors: np.ndarray, offsets: np.ndarray) -> Head | None:
        """A saved-model head scoring ``vectors``' classes: softmax(scale x score - offsets)
        (``offsets``: the calibration subtracted from seen classes, in score units)."""
        proj = self.projection()
        if proj is None:
            return None
        import torch

        v = np.asarray(vectors, np.float64)
        head = Head({"kind": "projected", "in_dim": proj.shape[0], "num_classes": len(v),
                     "embed_dim": proj.shape[1], "normalize": self.cosine,
                     "logit_scale": self.logit_scale})
        head.projection.copy_(torch.as_tensor(proj, dtype=torch.float32))
        head.prototypes.copy_(torch.as_tensor(v, dtype=torch.float32))
        head.offsets.copy_(torch.as_tensor(self.logit_scale * np.asarray(offsets),
                                           dtype=torch.float32))
        head.mean.copy_(torch.as_tensor(self.scaler_.mean_, dtype=torch.float32))
        head.scale.copy_(torch.as_tensor(self.scaler_.scale_, dtype=torch.float32))
        return head.eval()


class ESZSL(ZeroShotMethod):
    """Embarrassingly simple zero-shot learning, closed form (``gamma``, ``lam``: the
    regularisers of the feature and the signature side)."""

    def __init__(self, gamma: float = 1.0, lam: float = 1.0) -> None:
        self.gamma, self.lam = float(gamma), float(lam)

    def fit(self, x: np.ndarray, y: np.ndarray, vectors: np.ndarray) -> ESZSL:
        self.scaler_ = StandardScaler().fit(x)
        X = self.scaler_.transform(x).T  # d x m
        S = np.asarray(vectors, np.float64).T  # a x z
        Y = np.where(np.eye(S.shape[1])[y] > 0, 1.0, -1.0)  # m x z
        d, a = X.shape[0], S.shape[0]
        left = np.linalg.solve(X @ X.T + self.gamma * np.eye(d), X @ Y @ S.T)
        self.V_ = np.linalg.solve((S @ S.T + self.lam * np.eye(a)).T, left.T).T  # d x a
        return self

    def scores(self, x: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        return self.scaler_.transform(x) @ self.V_ @ np.asarray(vectors, np.float64).T

    def projection(self) -> np.ndarray:
        return self.V_


class DAP(ZeroShotMethod):
    """Direct attribute prediction: a logistic classifier per attribute (values above
    ``threshold`` count as present); score = sum of log p(attribute value of the class)."""

    def __init__(self, C: float = 1.0, threshold: float = 0.5) -> None:
        self.C, self.threshold = float(C), float(threshold)

    def fit(self, x: np.ndarray, y: np.ndarray, vectors: np.ndarray) -> DAP:
        from sklearn.linear_model import LogisticRegression

        self.scaler_ = StandardScaler().fit(x)
        xs = self.scaler_.transform(x)
        per_item = np.asarray(vectors)[y] > self.threshold  # m x a
        self.models_: list[LogisticRegression | float] = []
        for j in range(per_item.shape[1]):
            t = per_item[:, j]
            if t.all() or not t.any():  # constant among the seen classes: its frequency
                self.models_.append(float(t.mean()))
                continue
            self.models_.append(LogisticRegression(C=self.C, max_iter=2000).fit(xs, t))
        return self

    def scores(self, x: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        xs = self.scaler_.transform(x)
        p = np.column_stack([
            m.predict_proba(xs)[:, 1] if not isinstance(m, float) else np.full(len(xs), m)
            for m in self.models_]).clip(1e-4, 1 - 1e-4)
        sig = (np.asarray(vectors) > self.threshold).astype(np.float64)  # classes x a
        return np.log(p) @ sig.T + np.log(1 - p) @ (1 - sig).T


class RidgeMap(ZeroShotMethod):
    """Features -> class-vector space by ridge regression (``alpha``); cosine scores."""

    cosine = True
    logit_scale = 10.0

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = float(alpha)

    def fit(self, x: np.ndarray, y: np.ndarray, vectors: np.ndarray) -> RidgeMap:
        self.scaler_ = StandardScaler().fit(x)
        xs = self.scaler_.transform(x)
        t = _l2(np.asarray(vectors, np.float64))[y]
        d = xs.shape[1]
        self.W_ = np.linalg.solve(xs.T @ xs + self.alpha * len(xs) * np.eye(d), xs.T @ t)
        return self

    def scores(self, x: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        return _l2(self.scaler_.transform(x) @ self.W_) @ _l2(np.asarray(vectors)).T

    def projection(self) -> np.ndarray:
        return self.W_


class RankingMap(ZeroShotMethod):
    """A linear map trained with a margin ranking loss (DeViSE): for each image, every other
    class scores at least ``margin`` below its own, or pays the difference. Adam, full
    batch, ``epochs`` steps, weight decay ``wd``; scores are cosine similarities."""

    cosine = True
    logit_scale = 10.0

    def __init__(self, margin: float = 0.2, epochs: int = 300, lr: float = 1e-2,
                 wd: float = 1e-3, seed: int = 0) -> None:
        self.margin, self.epochs, self.lr, self.wd, self.seed = margin, epochs, lr, wd, seed

    def fit(self, x: np.ndarray, y: np.ndarray, vectors: np.ndarray) -> RankingMap:
        import torch

        self.scaler_ = StandardScaler().fit(x)
        xs = torch.as_tensor(self.scaler_.transform(x), dtype=torch.float32)
        t = torch.nn.functional.normalize(torch.as_tensor(np.asarray(vectors), dtype=torch.float32),
                                          dim=1)
        yt = torch.as_tensor(y)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            w = torch.nn.Linear(xs.shape[1], t.shape[1], bias=False)
        opt = torch.optim.Adam(w.parameters(), lr=self.lr, weight_decay=self.wd)
        for _ in range(self.epochs):
            opt.zero_grad()
            s = torch.nn.functional.normalize(w(xs), dim=1) @ t.T  # m x z
            own = s.gather(1, yt[:, None])
            hinge = (self.margin - own + s).clamp_min(0.0)
            hinge = hinge.masked_fill(torch.nn.functional.one_hot(yt, t.shape[0]).bool(), 0.0)
            hinge.sum(1).mean().backward()
            opt.step()
        self.W_ = w.weight.detach().numpy().T.astype(np.float64)
        return self

    def scores(self, x: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        return _l2(self.scaler_.transform(x) @ self.W_) @ _l2(np.asarray(vectors)).T

    def projection(self) -> np.ndarray:
        return self.W_


METHODS: dict[str, type[ZeroShotMethod]] = {"eszsl": ESZSL, "dap": DAP, "ridge": RidgeMap,
                                            "ranking": RankingMap}
ATTRIBUTE_METHODS = ("dap",)  # need an attribute table (binary attributes)
