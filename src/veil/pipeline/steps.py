"""Scenario steps: a registry of kinds, and the foundation's ``train`` and ``evaluate``.

A step is a pydantic config class (a :class:`StepConfig` subclass that refuses unknown keys)
plus a function ``run(config, ctx) -> Artifact | None``. Packages add their steps with
:func:`register_step`; the step's output is known to later steps by the step's ``id``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field

from veil.core.errors import ScenarioError
from veil.pipeline.scenario import ANY_FILE, StepConfig, kind_fits, ref


@dataclass
class Artifact:
    """What a step produced: its kind (``model``, ...), a file if any, and facts about it."""

    kind: str
    path: Path | None = None
    meta: dict = field(default_factory=dict)


@dataclass
class RunContext:
    """What a step sees: the output folder, the ledger, earlier outputs, the seed, quietness."""

    out: Path
    ledger: object  # veil.core.guarantees.Ledger
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    seed: int = 0
    quiet: bool | None = None

    def artifact(self, name: str, kind: str) -> Artifact:
        art = self.artifacts.get(name)
        if art is None or not kind_fits(kind, art.kind) or art.path is None and kind == ANY_FILE:
            raise ScenarioError(f"no {kind} named {name!r} was produced by an earlier step")
        return art

    def key_path(self, name: str) -> Path:
        """Where a step keeps a key it made for the run: ``<out>/keys/<name>`` (the folder
        is made; key files themselves are written mode 0600 by their writers)."""
        folder = self.out / "keys"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

    def path_for(self, kind: str, name: str, suffix: str) -> Path:
        """Where a step writes an output file: ``<out>/<kind>s/<name><suffix>``."""
        folder = self.out / f"{kind}s"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{name}{suffix}"


@dataclass(frozen=True)
class StepKind:
    config: type[StepConfig]
    run: Callable[[StepConfig, RunContext], Artifact | None]
    produces: str | None


_STEPS: dict[str, StepKind] = {}
# Modules that register the step kinds of technique packages; imported on first lookup so
# that `veil --help` and scenario parsing never pay for packages a run does not use.
STEP_MODULES = (
    "veil.pipeline.dp_step",
    "veil.pipeline.collab_step",
    "veil.pipeline.audit_step",
    "veil.pipeline.he_step",
    "veil.pipeline.deid_step",
    "veil.pipeline.enclave_step",
    "veil.pipeline.protect_step",
    "veil.pipeline.backdoor_step",
    "veil.pipeline.mpc_step",
    "veil.pipeline.imaging_step",
)
_loaded = False


def _load_step_modules() -> None:
    global _loaded
    if not _loaded:
        import importlib

        for name in STEP_MODULES:
            importlib.import_module(name)
        _loaded = True


def register_step(kind: str, config: type[StepConfig], produces: str | None = None):
    """Register ``run(config, ctx)`` as step kind ``kind``; ``produces`` names its output's kind."""

    def wrap(fn):
        _STEPS[kind] = StepKind(config, fn, produces)
        return fn

    return wrap


def kinds() -> list[str]:
    """Every registered step kind."""
    _load_step_modules()
    return sorted(_STEPS)


def step_kind(kind: str) -> StepKind:
    _load_step_modules()
    if kind not in _STEPS:
        raise ScenarioError(f"unknown step kind {kind!r}; known: {', '.join(kinds())}")
    return _STEPS[kind]


def config_for(kind: str) -> type[StepConfig]:
    return step_kind(kind).config


# --- train -------------------------------------------------------------------------------


class TrainingFields(StepConfig):
    """What every training step names: data, network, schedule and seed."""

    data: str
    model: str = "mlp"
    model_options: dict = Field(default_factory=dict)
    epochs: float = Field(10, gt=0, le=10_000)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(0.05, gt=0)
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = Field(0.9, ge=0, lt=1)
    seed: int | None = None
    limit: int | None = Field(None, ge=1)

    def prepare(self, ctx: RunContext):
        from veil.core.train import prepare

        return prepare(
            self.data,
            self.model,
            model_options=self.model_options,
            limit=self.limit,
            seed=self.seed_in(ctx),
        )

    def seed_in(self, ctx: RunContext) -> int:
        return ctx.seed if self.seed is None else self.seed

    def whole_epochs(self, what: str = "epochs") -> int:
        """``epochs`` as an int, refused with a clear error when it is fractional."""
        if self.epochs != int(self.epochs):
            raise ScenarioError(f"step {self.id}: {what} must be whole here, got {self.epochs}")
        return int(self.epochs)


def save_trained(ctx: RunContext, cfg: TrainingFields, prepared, record) -> Artifact:
    """Write a trained step's model file and ledger record; return its model artifact."""
    from veil.core.io import save_model

    path = ctx.path_for("model", cfg.id, ".veil")
    save_model(
        path,
        prepared.model,
        prepared.spec,
        classes=list(prepared.train.classes),
        extra={"data": cfg.data, "step": cfg.id, "train_subset": prepared.subset},
        force=True,
    )
    ctx.ledger.record(record)
    meta = {"data": cfg.data, "spec": prepared.spec.to_dict(), "config": cfg.model_dump()}
    return Artifact("model", path, meta)


class TrainConfig(TrainingFields):
    """Plain (non-private) training of a network on a data set; gives no guarantee."""

    kind: Literal["train"]
    weight_decay: float = Field(0.0, ge=0)


def fit_plain(cfg: TrainingFields, ctx: RunContext, prepared, data=None, **extra):
    """Train ``prepared.model`` with ``cfg``'s schedule on ``data`` (default: its training
    split), evaluated on its test split; return veil.core.train's ``Trained``."""
    from veil.core.train import Trained, fit

    p = prepared
    result = fit(
        p.model,
        p.train if data is None else data,
        eval_data=p.test,
        epochs=cfg.whole_epochs(),
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        optimizer=cfg.optimizer,
        momentum=cfg.momentum,
        seed=cfg.seed_in(ctx),
        quiet=ctx.quiet,
        **extra,
    )
    return Trained(p.model, p.spec, p.train, p.test, p.subset, result)


@register_step("train", TrainConfig, produces="model")
def run_train(cfg: TrainConfig, ctx: RunContext) -> Artifact:
    trained = fit_plain(cfg, ctx, cfg.prepare(ctx), weight_decay=cfg.weight_decay)
    return save_trained(ctx, cfg, trained, trained.record(cfg.id))


# --- evaluate ----------------------------------------------------------------------------


class EvaluateConfig(StepConfig):
    """Accuracy and loss of an earlier step's model on a split of a data set."""

    kind: Literal["evaluate"]
    uses: str = ref("model")
    data: str | None = None
    split: Literal["train", "test"] = "test"


@register_step("evaluate", EvaluateConfig)
def run_evaluate(cfg: EvaluateConfig, ctx: RunContext) -> None:
    from veil.core import data
    from veil.core.guarantees import Record
    from veil.core.io import load_model
    from veil.core.train import evaluate, per_class_accuracy

    art = ctx.artifact(cfg.uses, "model")
    loaded = load_model(art.path)
    ds = data.load(cfg.data or art.meta["data"], cfg.split)
    metrics = evaluate(loaded.model, ds)
    details = {
        "model": cfg.uses,
        "data": ds.name,
        "split": cfg.split,
        "per_class_accuracy": per_class_accuracy(loaded.model, ds),
    }
    ctx.ledger.record(Record("evaluate", cfg.id, metrics=metrics, details=details))
