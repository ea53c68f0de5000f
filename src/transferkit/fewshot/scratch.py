"""Meta-learning a small network from scratch on image episodes (e.g. glyphs): build the
learner of a method, meta-train it on base-class episodes through the one Trainer, and turn
it into an episode method for :func:`~transferkit.fewshot.episodes.run_episodes` that keeps
every tensor on the model's device.

Methods: ``protonet-trained`` (Conv-4 embedding, cosine prototypes), ``maml`` (second order),
``fomaml`` (first order), ``metasgd`` (a learned step size per weight) and ``lstm-optimizer``
(a coordinate-wise LSTM that outputs each weight's update; see ``learned_opt``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from transferkit.fewshot.convnet import conv4
from transferkit.fewshot.learned_opt import LSTMOptimizerMAML
from transferkit.fewshot.meta import MAML, ProtoNet
from transferkit.fewshot.methods import protonet_cosine
from transferkit.train import EpisodicPlan, TensorData, TrainConfig, Trainer, TrainModule

SCRATCH_METHODS = ("protonet-trained", "maml", "fomaml", "metasgd", "lstm-optimizer")


def build_learner(method: str, *, ways: int, shots: int, width: int = 32, size: int = 28,
                  inner_steps: int = 1, inner_lr: float = 0.4, seed: int = 0) -> TrainModule:
    """The untrained learner of ``method`` on a Conv-4 of ``width`` channels."""
    if method == "protonet-trained":
        return ProtoNet(conv4(width, size=size, seed=seed), ways=ways, shots=shots, queries=5,
                        seed=seed)
    net = conv4(width, ways=ways, size=size, seed=seed)
    torch.nn.init.zeros_(net[-1].weight)  # a zero classifier: no class favoured before the
    torch.nn.init.zeros_(net[-1].bias)  # support (episodes permute the labels)
    if method == "lstm-optimizer":
        return LSTMOptimizerMAML(net, inner_steps=inner_steps, inner_lr=inner_lr,
                                 val_shots=shots, seed=seed)
    if method not in ("maml", "fomaml", "metasgd"):
        raise ValueError(f"method {method!r}: choose from {', '.join(SCRATCH_METHODS)}")
    return MAML(net, inner_steps=inner_steps, inner_lr=inner_lr, first_order=method == "fomaml",
                learn_lr=method == "metasgd", val_shots=shots)


def as_tensor_images(images: np.ndarray) -> torch.Tensor:
    """uint8 N x H x W images as float N x 1 x H x W in [0, 1]."""
    return torch.as_tensor(images, dtype=torch.float32)[:, None] / 255.0


def meta_train(learner: TrainModule, train: tuple[np.ndarray, np.ndarray],
               val: tuple[np.ndarray, np.ndarray] | None, *, ways: int, shots: int,
               queries: int = 15, episodes: int = 500, epochs: int = 4, lr: float = 1e-3,
               seed: int = 0, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Meta-train ``learner`` on ``episodes`` base-class episodes per epoch (``train``:
    uint8 images and labels); ``val`` (other classes) picks the epoch. Returns the history."""
    if isinstance(learner, ProtoNet):  # prototypes learn from more ways than they test on
        ways, queries = max(ways, 20), 5
    plan = EpisodicPlan("train", ways=ways, shots=shots, queries=queries, episodes=episodes)
    cfg = TrainConfig(epochs=epochs, lr=lr, seed=seed, batch_size=64, precision="32",
                      weight_decay=0.0)
    res = Trainer(cfg, label=type(learner).__name__, log=log).fit(
        learner, {"train": TensorData(as_tensor_images(train[0]), train[1])},
        None if val is None else TensorData(as_tensor_images(val[0]), val[1]), plan=plan)
    return {"history": res.history}


def episode_method(learner: TrainModule, images: np.ndarray
                   ) -> tuple[np.ndarray, Callable[..., np.ndarray]]:
    """(index column, method) for ``run_episodes`` on ``images``: the learner adapts or
    embeds on its own device; only query logits come back as numpy."""
    dev = next(learner.parameters()).device
    x = as_tensor_images(images).to(dev)
    learner.eval()
    if isinstance(learner, ProtoNet):
        with torch.no_grad():
            emb = torch.cat([learner(x[i:i + 512]) for i in range(0, len(x), 512)])
        feats = emb.float().cpu().numpy()  # the final output: embeddings to numpy
        return feats, protonet_cosine
    assert isinstance(learner, MAML)

    def method(s: np.ndarray, sl: np.ndarray, q: np.ndarray, n: int) -> np.ndarray:
        si, qi = (torch.as_tensor(a[:, 0], device=dev) for a in (s, q))
        return learner.predict_episode(x[si], torch.as_tensor(sl, device=dev),
                                       x[qi]).cpu().numpy()

    return np.arange(len(images))[:, None], method


def random_features(images: np.ndarray, width: int = 32, seed: int = 0) -> np.ndarray:
    """Embeddings of ``images`` by an untrained Conv-4 (the negative control)."""
    net = conv4(width, size=images.shape[-1], seed=seed).eval()
    with torch.no_grad():
        return net(as_tensor_images(images)).numpy()
