"""Shallow classifier heads: fitted with scikit-learn, run as small torch modules.

Every head maps pooled features to class probabilities, so a fitted model is one torch graph
(backbone + head) that saves to safetensors, reloads without pickle and exports to ONNX.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from sklearn.calibration import CalibratedClassifierCV
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from torch import nn

HEADS = ("logreg", "svm", "knn", "mlp")


class Head(nn.Module):
    """Standardise features, then map them to class probabilities."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = dict(config)
        d, k = int(config["in_dim"]), int(config["num_classes"])
        kind = config["kind"]
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("scale", torch.ones(d))
        if kind == "linear":
            self.body: nn.Module = nn.Linear(d, k)
        elif kind == "mlp":
            layers: list[nn.Module] = []
            prev = d
            for h in config["hidden"]:
                layers += [nn.Linear(prev, int(h)), nn.ReLU()]
                prev = int(h)
            layers.append(nn.Linear(prev, k))
            self.body = nn.Sequential(*layers)
        elif kind == "calibrated_linear":
            n_dec = 1 if k == 2 else k
            self.body = nn.Linear(d, n_dec)
            self.register_buffer("a", torch.zeros(n_dec))
            self.register_buffer("b", torch.zeros(n_dec))
        elif kind == "linear_vote":  # boosting: a weighted vote of linear models' softmaxes
            r = int(config["rounds"])
            self.register_buffer("weights", torch.zeros(r, k, d))
            self.register_buffer("biases", torch.zeros(r, k))
            self.register_buffer("alphas", torch.ones(r))
        elif kind == "projected":  # zero-shot: features mapped into a class-vector space
            e = int(config["embed_dim"])
            self.register_buffer("projection", torch.zeros(d, e))
            self.register_buffer("prototypes", torch.zeros(k, e))
            self.register_buffer("offsets", torch.zeros(k))
            self.logit_scale = float(config.get("logit_scale", 1.0))
        elif kind == "cosine":  # class prototypes (e.g. label-description embeddings)
            self.register_buffer("prototypes", torch.zeros(k, d))
            self.logit_scale = float(config.get("logit_scale", 20.0))
        elif kind == "knn":
            n = int(config["n_train"])
            self.register_buffer("train_features", torch.zeros(n, d))
            self.register_buffer("train_onehot", torch.zeros(n, k))
        else:
            raise ValueError(f"unknown head kind {kind!r}")

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Class probabilities [B, num_classes]."""
        x = (features - self.mean) / self.scale
        kind = self.config["kind"]
        if kind in ("linear", "mlp"):
            return torch.softmax(self.body(x), dim=-1)
        if kind == "calibrated_linear":
            p = torch.sigmoid(-(self.a * self.body(x) + self.b))
            if p.shape[-1] == 1:
                return torch.cat([1 - p, p], dim=-1)
            total = p.sum(dim=-1, keepdim=True)
            uniform = torch.full_like(p, 1.0 / p.shape[-1])
            return torch.where(total > 0, p / total.clamp_min(1e-12), uniform)
        if kind == "linear_vote":
            probs = torch.softmax(torch.einsum("bd,rkd->brk", x, self.weights) + self.biases,
                                  dim=-1)
            vote = (probs * self.alphas[None, :, None]).sum(dim=1)
            return vote / vote.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        if kind == "projected":  # scores: (x P) . t_c (cosine when "normalize"), - offsets
            z = x @ self.projection
            t = self.prototypes
            if self.config.get("normalize", True):
                z, t = nn.functional.normalize(z, dim=-1), nn.functional.normalize(t, dim=-1)
            return torch.softmax(self.logit_scale * (z @ t.T) - self.offsets, dim=-1)
        if kind == "cosine":
            x = nn.functional.normalize(x, dim=-1)
            protos = nn.functional.normalize(self.prototypes, dim=-1)
            return torch.softmax(self.logit_scale * (x @ protos.T), dim=-1)
        # knn: cosine similarity to the stored training features, vote of the k nearest
        x = nn.functional.normalize(x, dim=-1)
        sims = x @ self.train_features.T
        k = min(int(self.config["k"]), int(self.config["n_train"]))
        idx = sims.topk(k, dim=-1).indices
        return self.train_onehot[idx].mean(dim=1)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float32))


def _two_logits(w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Binary sklearn output (one logit z) as two logits [0, z]: softmax = [1-σ(z), σ(z)]."""
    w2 = np.vstack([np.zeros_like(w), w])
    b2 = np.concatenate([np.zeros_like(b), b])
    return w2, b2


def fit_head(features: np.ndarray, labels: np.ndarray, num_classes: int, kind: str = "logreg",
             C: float = 1.0, hidden: int = 512, k: int = 5, seed: int = 0,
             tol: float = 1e-4, min_scale: float | None = None,
             sample_weight: np.ndarray | None = None,
             device: torch.device | None = None) -> Head:
    """Fit a head of ``kind`` (logreg, svm, knn, mlp) on features and integer labels.

    ``sample_weight`` (logreg and svm): per-item weights, e.g. from a density ratio.

    ``tol`` is the solvers' stopping tolerance (looser is faster, e.g. for model selection).
    ``min_scale`` floors the per-feature standard deviations used to standardise (a head
    that fine-tuning starts from must not weigh nearly constant features by 1/std).
    ``device``: a GPU fits the logreg head there (PyTorch L-BFGS, the same objective);
    elsewhere scikit-learn fits it.
    """
    if kind not in HEADS:
        raise ValueError(f"unknown head {kind!r}; choose one of {', '.join(HEADS)}")
    if sample_weight is not None and kind not in ("logreg", "svm"):
        raise ValueError(f"the {kind} head takes no sample weights; use logreg or svm")
    present = np.unique(labels)
    if len(present) < 2:
        raise ValueError("a classifier needs at least 2 classes in the training data")
    d = features.shape[1]
    scaler = StandardScaler().fit(features)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    if min_scale is not None:
        scale = np.maximum(scale, min_scale)
    xs = (features - scaler.mean_) / scale
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if kind == "logreg" and device is not None and device.type != "cpu":
            head = _linear_on_device(xs, labels, num_classes, C, device, tol, sample_weight)
        elif kind == "logreg":
            clf = LogisticRegression(C=C, max_iter=3000, tol=tol, random_state=seed)
            clf.fit(xs, labels, sample_weight=sample_weight)
            head = _linear_from_sklearn(clf, d, num_classes)
        elif kind == "mlp":
            clf = MLPClassifier(hidden_layer_sizes=(hidden,), alpha=1.0 / C, max_iter=400,
                                tol=tol, random_state=seed).fit(xs, labels)
            head = _mlp_from_sklearn(clf, d, num_classes)
        elif kind == "svm":
            n_min = int(np.bincount(labels)[present].min())
            base = LinearSVC(C=C, max_iter=20000, tol=tol, random_state=seed)
            clf = CalibratedClassifierCV(base, method="sigmoid", cv=max(2, min(3, n_min)),
                                         ensemble=False).fit(xs, labels,
                                                             sample_weight=sample_weight)
            head = _svm_from_sklearn(clf, d, num_classes)
        else:
            head = Head({"kind": "knn", "in_dim": d, "num_classes": num_classes,
                         "n_train": len(labels), "k": int(k)})
            scaler.mean_ = np.zeros(d)
            scale = np.ones(d)
            normed = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True),
                                           1e-12)
            head.train_features.copy_(_t(normed))
            head.train_onehot.copy_(_t(np.eye(num_classes)[labels]))
    head.mean.copy_(_t(scaler.mean_))
    head.scale.copy_(_t(scale))
    head.sklearn_estimator = None if kind == "knn" else clf  # not saved; for inspection/tests
    return head.eval()


def _expand(clf: Any, w: np.ndarray, b: np.ndarray, d: int, num_classes: int,
            fill: float = -1e4) -> tuple[np.ndarray, np.ndarray]:
    """Place per-seen-class rows into all ``num_classes`` rows (unseen classes never win)."""
    W = np.zeros((num_classes, d), dtype=np.float64)
    B = np.full(num_classes, fill, dtype=np.float64)
    for row, c in enumerate(clf.classes_):
        W[int(c)] = w[row]
        B[int(c)] = b[row]
    return W, B


def _linear_from_sklearn(clf: LogisticRegression, d: int, num_classes: int) -> Head:
    w, b = clf.coef_, clf.intercept_
    if w.shape[0] == 1:
        w, b = _two_logits(w[0][None], b[:1])
    W, B = _expand(clf, w, b, d, num_classes)
    head = Head({"kind": "linear", "in_dim": d, "num_classes": num_classes})
    head.body.weight.data.copy_(_t(W))
    head.body.bias.data.copy_(_t(B))
    return head


def _linear_on_device(xs: np.ndarray, labels: np.ndarray, num_classes: int, C: float,
                      device: torch.device, tol: float,
                      sample_weight: np.ndarray | None) -> Head:
    W, B = fit_logreg(xs, labels, num_classes, C, device, tol=tol,
                      sample_weight=sample_weight)
    head = Head({"kind": "linear", "in_dim": xs.shape[1], "num_classes": num_classes})
    head.body.weight.data.copy_(_t(W))
    head.body.bias.data.copy_(_t(B))
    return head


def _mlp_from_sklearn(clf: MLPClassifier, d: int, num_classes: int) -> Head:
    hidden = [int(c.shape[1]) for c in clf.coefs_[:-1]]
    head = Head({"kind": "mlp", "in_dim": d, "num_classes": num_classes, "hidden": hidden})
    linears = [m for m in head.body if isinstance(m, nn.Linear)]
    for lin, w, b in zip(linears[:-1], clf.coefs_[:-1], clf.intercepts_[:-1], strict=True):
        lin.weight.data.copy_(_t(w.T))
        lin.bias.data.copy_(_t(b))
    w, b = clf.coefs_[-1].T, clf.intercepts_[-1]
    if w.shape[0] == 1:
        w, b = _two_logits(w, b)
    W, B = _expand(clf, w, b, w.shape[1], num_classes)
    linears[-1].weight.data.copy_(_t(W))
    linears[-1].bias.data.copy_(_t(B))
    return head


def _svm_from_sklearn(clf: CalibratedClassifierCV, d: int, num_classes: int) -> Head:
    cal = clf.calibrated_classifiers_[0]
    svc = cal.estimator
    if len(clf.classes_) != num_classes:
        raise ValueError("the svm head needs every class in the training data")
    w, b = svc.coef_, svc.intercept_
    a = np.array([c.a_ for c in cal.calibrators], dtype=np.float64)
    bb = np.array([c.b_ for c in cal.calibrators], dtype=np.float64)
    head = Head({"kind": "calibrated_linear", "in_dim": d, "num_classes": num_classes})
    head.body.weight.data.copy_(_t(w))
    head.body.bias.data.copy_(_t(b))
    head.a.copy_(_t(a))
    head.b.copy_(_t(bb))
    return head


def linear_vote_head(classifiers: list[LogisticRegression], alphas: list[float],
                     mean: np.ndarray, scale: np.ndarray, num_classes: int) -> Head:
    """A head voting with fitted logistic regressions (on features standardised by
    ``mean``/``scale``), each weighted by its alpha: a boosted ensemble as one torch module."""
    d = int(np.asarray(mean).shape[0])
    head = Head({"kind": "linear_vote", "in_dim": d, "num_classes": num_classes,
                 "rounds": len(classifiers)})
    for r, clf in enumerate(classifiers):
        w, b = clf.coef_, clf.intercept_
        if w.shape[0] == 1:
            w, b = _two_logits(w[0][None], b[:1])
        W, B = _expand(clf, w, b, d, num_classes)
        head.weights[r].copy_(_t(W))
        head.biases[r].copy_(_t(B))
    head.alphas.copy_(_t(np.asarray(alphas)))
    head.mean.copy_(_t(mean))
    head.scale.copy_(_t(np.where(np.asarray(scale) > 0, scale, 1.0)))
    return head.eval()


def fit_logreg(x: np.ndarray | torch.Tensor, y: np.ndarray, num_classes: int, C: float,
               device: torch.device, *, tol: float = 1e-4, max_iter: int = 500,
               sample_weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(coef [num_classes, d], intercept [num_classes]) of the fitted model, as numpy."""
    xs = torch.as_tensor(x, dtype=torch.float32, device=device)
    ys = torch.as_tensor(np.asarray(y), dtype=torch.long, device=device)
    w = (torch.ones(len(ys), device=device) if sample_weight is None else
         torch.as_tensor(np.asarray(sample_weight), dtype=torch.float32, device=device))
    coef = torch.zeros(num_classes, xs.shape[1], device=device, requires_grad=True)
    bias = torch.zeros(num_classes, device=device, requires_grad=True)
    present = torch.zeros(num_classes, dtype=torch.bool, device=device)
    present[ys.unique()] = True
    opt = torch.optim.LBFGS([coef, bias], lr=1.0, max_iter=max_iter, tolerance_grad=tol,
                            tolerance_change=1e-12, history_size=20,
                            line_search_fn="strong_wolfe")
    scale = 1.0 / max(float(w.sum()), 1.0)  # the same optimum, better conditioned

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = xs @ coef.T + bias
        logits = logits.masked_fill(~present, -1e4)  # absent classes: never predicted
        ce = torch.nn.functional.cross_entropy(logits, ys, reduction="none")
        loss = scale * (C * (w * ce).sum() + 0.5 * (coef * coef).sum())
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        b = bias.masked_fill(~present, -1e4)
    return coef.detach().cpu().numpy(), b.cpu().numpy()
