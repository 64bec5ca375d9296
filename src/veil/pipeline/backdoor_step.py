"""Backdoor steps: ``backdoor-attack`` trains a backdoored model (to test a pipeline's
defenses), ``audit-backdoor`` scans an earlier step's model with clean data (veil.audit)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from veil.pipeline.scenario import StepConfig, ref
from veil.pipeline.steps import Artifact, RunContext, TrainingFields, register_step, save_trained


class BackdoorAttackConfig(TrainingFields):
    """Train a network with a poisoned share of each batch (Salem et al.'s attacks)."""

    kind: Literal["backdoor-attack"]
    model: str = "lenet"
    method: Literal["badnets", "random", "ban", "cban"] = "random"
    targets: list[int] = Field(default_factory=lambda: [0], min_length=1)
    rate: float = Field(0.1, gt=0, lt=1)
    size: int | None = Field(None, ge=1)
    epochs: float = Field(3, gt=0, le=1000)
    lr: float = Field(1e-3, gt=0)
    optimizer: Literal["sgd", "adam"] = "adam"


@register_step("backdoor-attack", BackdoorAttackConfig, produces="model")
def run_backdoor_attack(cfg: BackdoorAttackConfig, ctx: RunContext) -> Artifact:
    from veil.audit import backdoor

    p = cfg.prepare(ctx)
    attack = backdoor.AttackConfig(
        method=cfg.method,
        targets=tuple(cfg.targets),
        rate=cfg.rate,
        size=cfg.size,
        epochs=cfg.whole_epochs(),
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        optimizer=cfg.optimizer,
        seed=cfg.seed_in(ctx),
    )
    result = backdoor.train_backdoored(p.model, p.train, p.test, attack)
    return save_trained(ctx, cfg, p, result.record(cfg.id))


class AuditBackdoorConfig(StepConfig):
    """Scan an earlier step's model for a backdoor: Neural Cleanse and/or ABS-lite."""

    kind: Literal["audit-backdoor"]
    uses: str = ref("model")
    defenses: list[Literal["nc", "abs"]] = Field(default_factory=lambda: ["nc", "abs"])
    limit: int = Field(2000, ge=20)
    steps: int = Field(300, ge=10)
    bound: float = Field(0.06, gt=0, lt=1)


@register_step("audit-backdoor", AuditBackdoorConfig)
def run_audit_backdoor(cfg: AuditBackdoorConfig, ctx: RunContext) -> None:
    from veil.audit.backdoor.scan import scan_model
    from veil.core import data
    from veil.core.io import load_model

    art = ctx.artifact(cfg.uses, "model")
    loaded = load_model(art.path)
    clean = data.load(art.meta["data"], "test")
    clean = clean.subset(data.sample_indices(len(clean), min(cfg.limit, len(clean)), ctx.seed))
    for entry in scan_model(loaded.model, clean, cfg.defenses, cfg.steps, cfg.bound, cfg.id):
        ctx.ledger.add(entry)
