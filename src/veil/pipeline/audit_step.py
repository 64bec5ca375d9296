"""The ``audit-membership`` step: attack an earlier step's model; the audit goes in the ledger.

When the audited model came from a ``dp-train`` step, its claimed (ε, δ) is read from the
ledger and the measured ROC is checked against the DP bound.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from veil.pipeline.scenario import StepConfig, ref
from veil.pipeline.steps import RunContext, register_step


class AuditMembershipConfig(StepConfig):
    """Membership inference against a model produced earlier in the scenario."""

    kind: Literal["audit-membership"]
    uses: str = ref("model")
    attack: Literal["lira", "lira-offline", "threshold"] = "lira"
    shadows: int = Field(16, ge=2, le=256)
    limit: int = Field(1000, ge=10)
    epochs: int = Field(10, ge=1)
    lr: float = Field(0.05, gt=0)
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["sgd", "adam"] = "sgd"


@register_step("audit-membership", AuditMembershipConfig)
def run_audit_membership(cfg: AuditMembershipConfig, ctx: RunContext) -> None:
    from veil.audit.membership import audit_saved_model

    art = ctx.artifact(cfg.uses, "model")
    claims = [e for e in ctx.ledger.entries if e.step == cfg.uses and "epsilon" in e.numbers]
    epsilon = claims[0].numbers["epsilon"] if claims else None
    delta = claims[0].numbers.get("delta", 1e-5) if claims else 1e-5
    recipe = {
        "epochs": cfg.epochs,
        "lr": cfg.lr,
        "batch_size": cfg.batch_size,
        "optimizer": cfg.optimizer,
    }
    _, entry = audit_saved_model(
        art.path,
        art.meta["data"],
        cfg.attack,
        cfg.shadows,
        cfg.limit,
        recipe,
        epsilon,
        delta,
        cfg.id,
        ctx.quiet,
    )
    ctx.ledger.add(entry)
