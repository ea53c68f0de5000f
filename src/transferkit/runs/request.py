"""What a fit run is given, as one typed request (saved as the run's ``run_args.json``, so
``--resume`` continues with it), and the data it reads, checked and split."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from transferkit._io import write_json_atomic
from transferkit.backbones.modality import IMAGE_BACKBONE, check_modality
from transferkit.data.dataset import Dataset, Splits, make_splits
from transferkit.data.duplicates import duplicate_notes
from transferkit.errors import DataError
from transferkit.runs.data import as_data, single
from transferkit.runs.rundir import RUN_ARGS
from transferkit.strategies import StrategySpec, make_strategy, strategy_spec

DataArg = str | Path | Dataset | Splits
_PATHS = ("data", "val", "test", "out")


@dataclass
class FitRequest:
    """A fit run: the data and its roles, the strategy and backbone, the split, and the
    strategy's own ``options`` (checked against the strategy registry when built: an option
    the strategy does not take is an error naming it)."""

    data: DataArg
    strategy: str = "probe"
    backbone: Any = IMAGE_BACKBONE  # a name, or a Backbone object (Python callers)
    arch: str | None = None
    val: DataArg | None = None
    test: DataArg | None = None
    roles: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    skip_bad: bool = False
    test_fraction: float = 0.25
    val_fraction: float = 0.0
    cache: Any = True
    text_column: str | None = None
    label_column: str = "label"
    guard: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.roles = dict(self.roles or {})
        self.options = {k: v for k, v in (self.options or {}).items() if v is not None}

    @property
    def spec(self) -> StrategySpec:
        """The strategy's registration."""
        return strategy_spec(self.strategy)

    def check(self) -> None:
        """The strategy's options and the backbone's name (cheap: no data, no disk)."""
        make_strategy(self.strategy, context={"backbone": self.backbone, "arch": self.arch,
                                              "seed": self.seed}, **self.options)
        from transferkit.backbones import Backbone, resolve_backbone

        if not isinstance(self.backbone, Backbone):
            resolve_backbone(self.backbone, self.arch)

    @classmethod
    def from_args(cls, data: DataArg, **args: Any) -> FitRequest:
        """A request from flat keyword arguments (run_args.json, ``fit_run``): the request's
        own fields by name, every other key a strategy option."""
        own = {f.name for f in fields(cls)} - {"data", "options"}
        options = dict(args.pop("options", None) or {})
        options.update({k: v for k, v in args.items() if k not in own and k != "out"})
        return cls(data=data, options=options, **{k: v for k, v in args.items() if k in own})

    def as_args(self) -> dict[str, Any]:
        """The flat form saved as run_args.json (the strategy's options at the top level)."""
        args = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "options"}
        args["cache"] = self.cache if isinstance(self.cache, bool) else True
        return {**args, **self.options}

    def save(self, where: Path, out: Path) -> None:
        """Write run_args.json into ``where`` (paths absolute; a request holding Python
        objects is marked not resumable from the command line)."""
        args = {k: (str(Path(v).resolve()) if k in _PATHS and isinstance(v, str) else v)
                for k, v in {**self.as_args(), "out": out}.items()}
        args["roles"] = {r: _plain(str(Path(v).resolve()) if isinstance(v, str) else v)
                         for r, v in self.roles.items()}
        try:
            write_json_atomic(where / RUN_ARGS, {k: _plain(v) for k, v in args.items()})
        except TypeError:  # options that are Python objects: resuming needs the Python call
            write_json_atomic(where / RUN_ARGS, {"not_resumable": True})


def _plain(v: Any) -> Any:
    if isinstance(v, Path):
        return str(v.resolve())
    if isinstance(v, (Dataset, Splits)):
        return {"<dataset>": v.train.source if isinstance(v, Splits) else v.source}
    return v


def load_splits(req: FitRequest, log: Callable[[str], None] | None = None
                ) -> tuple[Splits, list[str]]:
    """The request's data read, every role checked against the strategy, split for
    training; and the notes its reading made (duplicates, odd files)."""
    spec = req.spec
    read = {"text_column": req.text_column, "label_column": req.label_column,
            "skip_bad": req.skip_bad}
    loaded = as_data(req.data, **read, labelled=True)
    for role, src in req.roles.items():
        if role in ("train", "val", "test"):
            raise ValueError(f"roles: {role!r} has its own argument (data / val / test)")
        how = True if role.endswith("test") else False if role in spec.unlabelled else None
        role_data = single(as_data(src, **read, labelled=how), role)
        loaded = (loaded if isinstance(loaded, Splits) else Splits(train=loaded)).with_role(
            role, role_data)
    _check_required(spec, loaded)
    val_fraction = max(req.val_fraction, 0.2) if req.guard and req.val is None \
        else req.val_fraction  # guard: both models are compared on the same validation data
    splits = make_splits(loaded, val=single(as_data(req.val, **read, labelled=True), "val"),
                         test=single(as_data(req.test, **read, labelled=True), "test"),
                         test_fraction=req.test_fraction, val_fraction=val_fraction,
                         seed=req.seed, unseen_classes=spec.unseen_classes)
    for role, ds in splits.items():
        if ds.modality not in spec.modalities:
            raise DataError(f"{ds.source}: {ds.modality} data ({role}), but strategy "
                            f"{req.strategy!r} takes {' or '.join(spec.modalities)} data")
    check_modality(req.backbone, splits.train.modality, splits.train.source, arch=req.arch)
    notes = list(dict.fromkeys([n for _, ds in splits.items() for n in ds.notes]
                               + duplicate_notes(splits)))
    for note in notes:
        if log is not None:
            log(f"note: {note}")
    return splits, notes


def _check_required(spec: StrategySpec, loaded: Dataset | Splits) -> None:
    missing = [r for r in spec.required
               if not (isinstance(loaded, Splits) and loaded.get(r) is not None)]
    if missing:
        raise DataError(f"strategy {spec.name!r} needs {', '.join(map(repr, missing))} data "
                        f"(roles={{{missing[0]!r}: PATH}}, or the command's option for it)")


def strategy_inputs(spec: StrategySpec, splits: Splits) -> dict[str, Dataset]:
    """The extra ``fit`` keywords (e.g. ``X_target``) for the roles the strategy declares."""
    return {kw: splits.get(role) for role, kw in spec.inputs.items()
            if splits.get(role) is not None}

