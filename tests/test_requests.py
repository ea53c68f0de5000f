"""The orchestration layer's contracts: a fit run's typed request reads the run_args.json
written before it existed, the fit command's strategy options come from the registry, and the
default backbone per modality is decided in one place."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from transferkit.backbones.modality import DEFAULTS, default_backbone
from transferkit.cli.fit import fit_cmd
from transferkit.runs.request import FitRequest
from transferkit.strategies.options import OPTIONS, option_doc, takers
from transferkit.strategies.registry import STRATEGIES

#: run_args.json as transferkit wrote it before FitRequest (flat: options at the top level)
OLD_RUN_ARGS = {
    "data": "/data/photos", "backbone": "efficientnet_lite0", "strategy": "finetune",
    "arch": None, "val": None, "test": None, "roles": {}, "seed": 3, "skip_bad": False,
    "test_fraction": 0.25, "val_fraction": 0.2, "cache": True, "text_column": None,
    "label_column": "label", "guard": False, "epochs": 4, "lr": 0.001, "freeze": "-2",
    "out": "/runs/a"}


def test_a_run_written_before_the_request_still_resumes_with_its_options() -> None:
    args = dict(OLD_RUN_ARGS)
    req = FitRequest.from_args(args.pop("data"), **args)
    assert (req.strategy, req.seed, req.val_fraction) == ("finetune", 3, 0.2)
    assert req.options == {"epochs": 4, "lr": 0.001, "freeze": "-2"}
    back = req.as_args()
    assert back == {k: v for k, v in OLD_RUN_ARGS.items() if k != "out"}


def test_a_request_refuses_an_option_its_strategy_does_not_take() -> None:
    with pytest.raises(ValueError, match="lora_r"):
        FitRequest("x", strategy="probe", options={"lora_r": 4}).check()


def test_every_declared_strategy_option_is_a_fit_option_and_says_who_takes_it() -> None:
    params = inspect.signature(fit_cmd).parameters
    for doc in OPTIONS:
        if takers(doc.name):
            assert doc.name in params, doc.name
            help_text = params[doc.name].annotation.__metadata__[0].help
            assert help_text.startswith("/".join(takers(doc.name)) + ":"), help_text
    # every option a user sets is a flag of its own or reachable by --option, never lost
    every = {o for s in STRATEGIES.values() for o in s.user_options()}
    assert "option" in params and {d.name for d in OPTIONS if takers(d.name)} <= every


def test_the_default_backbone_per_modality_is_decided_once(tmp_path: Path) -> None:
    from transferkit.cli._options import backbone_for

    (tmp_path / "t.csv").write_text("text,label\nhello,a\nbye,b\n")
    assert backbone_for(None, tmp_path / "t.csv") == DEFAULTS["text"] == "minilm"
    assert backbone_for("pixels", tmp_path / "t.csv") == "pixels"
    assert default_backbone("image") == "efficientnet_lite0"
    assert option_doc("no-such-option") is None
