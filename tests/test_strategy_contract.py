"""The contract every registered strategy keeps (run over all of them, on tiny backbones)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from transferkit.model import TransferModel
from transferkit.strategies import STRATEGIES, make_strategy, strategy_spec

#: options that make a strategy's work fit the tiny data (8 training items per class)
SMALL = {"protonet": {"ways": 3, "shots": 2, "queries": 3, "episodes": 4, "holdout": 0},
         "adapt": {"baseline": False}}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategy_contract(name: str, tiny_backbones, tiny_data, tmp_path: Path) -> None:
    spec = strategy_spec(name)
    modality = "image" if "image" in spec.modalities else "text"
    train, val = tiny_data[modality]
    options = {"epochs": 2} if spec.accepts("epochs") else {}
    options.update(SMALL.get(name, {}))
    # data roles the strategy requires besides train (e.g. an unlabelled target)
    roles = {spec.inputs[r]: val for r in spec.required}
    est = make_strategy(name, context={"backbone": tiny_backbones[modality], "cache": False,
                                       "seed": 0, "checkpoint_dir": None}, **options)

    # the registry's declaration (read without importing the estimator) is the real one
    assert set(spec.parameters()) == set(spec.cls._get_param_names())
    assert spec.gradient == spec.accepts("checkpoint_dir")

    # scikit-learn contract: get_params / clone / set_params round trip
    params = est.get_params()
    assert clone(est).get_params() == params
    assert est.set_params(seed=12345) is est
    assert est.seed == 12345 and est.get_params()["seed"] == 12345  # the change took
    assert clone(est).get_params()["seed"] == 12345
    est.set_params(**params)
    assert est.get_params() == params
    assert set(spec.user_options()) <= set(params)

    # predicting before fit is a clear error naming the estimator
    with pytest.raises(NotFittedError, match=type(est).__name__):
        est.predict(val.items[:2])

    # an unknown parameter is refused, naming it
    with pytest.raises(ValueError, match="takes no option 'no_such_option'"):
        make_strategy(name, no_such_option=1)
    with pytest.raises(TypeError, match="no_such_option"):
        spec.cls(no_such_option=1)

    assert est.fit(train, X_val=val, **roles) is est
    assert list(est.classes_) == train.class_names
    assert est.val_score_ is not None and 0.0 <= est.val_score_ <= 1.0
    proba = est.predict_proba(val.items)
    assert proba.shape == (len(val), 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
    assert list(est.predict(val.items)) == [est.classes_[i] for i in proba.argmax(1)]

    # save -> load gives the same probabilities, offline
    est.model_.save(tmp_path / "run")
    again = TransferModel.load(tmp_path / "run").predict_proba(val.items, cache=False)
    np.testing.assert_allclose(again, proba, atol=1e-6)


def test_registry_declares_every_strategy() -> None:
    assert {"probe", "finetune", "lora", "contrastive", "zeroshot"} <= set(STRATEGIES)
    assert strategy_spec("zeroshot").unseen_classes
    assert strategy_spec("lora").modalities == ("text",)
    assert strategy_spec("finetune").gradient and not strategy_spec("probe").gradient
    with pytest.raises(ValueError, match="Did you mean finetune"):
        strategy_spec("fintune")


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_parameter_is_declared_by_name(name: str) -> None:
    """No estimator takes a ``**kwargs`` bag: every parameter (the shared training ones
    included) is a named keyword of ``__init__``, so an option can be followed from the
    command line to the Trainer, and a misspelt one is a TypeError naming it."""
    import inspect

    from transferkit.strategies.train_params import TRAIN_PARAMS

    spec = strategy_spec(name)
    params = inspect.signature(spec.cls).parameters
    assert not [p for p in params.values() if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    if spec.gradient:
        assert set(TRAIN_PARAMS) <= set(params)
        with pytest.raises(TypeError, match="epoch"):
            spec.cls(epoch=3)
