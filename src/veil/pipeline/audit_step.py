"""The ``audit-membership`` step: attack an earlier step's model; the audit goes in the ledger.

When the audited model came from a ``dp-train`` step, its claimed (ε, δ) is read from the
ledger and the measured ROC is checked against the DP bound.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from veil.pipeline.scenario import StepConfig, ref
from veil.pipeline.steps import RunContext, register_step


def claimed_budget(ctx: RunContext, step: str) -> tuple[float | None, float]:
    """The (ε, δ) that ``step`` claimed in the ledger, or (None, 1e-5) if it claimed none."""
    for e in ctx.ledger.entries:
        if e.step == step and e.guarantee != "audit" and "epsilon" in e.numbers:
            return e.numbers["epsilon"], e.numbers.get("delta", 1e-5)
    return None, 1e-5


class AuditMembershipConfig(StepConfig):
    """Membership inference against a model produced earlier in the scenario."""

    kind: Literal["audit-membership"]
    uses: str = ref("model")
    attack: Literal["lira", "lira-offline", "shadow", "threshold"] = "lira"
    shadows: int = Field(16, ge=2, le=256)
    limit: int = Field(1000, ge=10)
    epochs: int = Field(10, ge=1)
    lr: float = Field(0.05, gt=0)
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["sgd", "adam"] = "sgd"
    augment: int = Field(0, ge=0, le=8)
    workers: int = Field(1, ge=1, le=64)


@register_step("audit-membership", AuditMembershipConfig)
def run_audit_membership(cfg: AuditMembershipConfig, ctx: RunContext) -> None:
    from veil.audit.membership import audit_saved_model

    art = ctx.artifact(cfg.uses, "model")
    epsilon, delta = claimed_budget(ctx, cfg.uses)
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
        cfg.augment,
        cfg.workers,
    )
    ctx.ledger.add(entry)


class AuditDPConfig(StepConfig):
    """One-run DP audit of an earlier training step: retrain its recipe with canaries."""

    kind: Literal["audit-dp"]
    uses: str = ref("model")
    canaries: int = Field(500, ge=20)
    guesses: int | None = Field(None, ge=2)
    confidence: float = Field(0.95, gt=0.5, lt=1)


@register_step("audit-dp", AuditDPConfig)
def run_audit_dp(cfg: AuditDPConfig, ctx: RunContext) -> None:
    from veil import dp
    from veil.audit.dp_audit import dp_audit_guarantee, one_run_audit
    from veil.core import data
    from veil.core.train import fit, prepare

    art = ctx.artifact(cfg.uses, "model")
    trained = art.meta["config"]  # the audited step's own settings: its recipe
    p = prepare(
        trained["data"],
        trained["model"],
        model_options=trained["model_options"],
        limit=trained["limit"],
        seed=trained.get("seed") or ctx.seed,
    )
    settings = {k: trained[k] for k in ("epochs", "batch_size", "lr", "optimizer", "momentum")}

    def recipe(ds):
        net = p.spec.build()
        if trained["kind"] == "dp-train":
            keys = set(dp.DPConfig.__dataclass_fields__) - {"seed", *settings}
            dp.train(net, ds, quiet=True, **settings, **{k: trained[k] for k in keys})
        else:
            fit(net, ds, quiet=True, **{**settings, "epochs": int(settings["epochs"])})
        return net

    pool = data.load(trained["data"], "test")
    epsilon, delta = claimed_budget(ctx, cfg.uses)
    result = one_run_audit(
        recipe,
        p.train,
        pool,
        min(cfg.canaries, len(pool)),
        cfg.guesses,
        delta,
        cfg.confidence,
        ctx.seed,
    )
    ctx.ledger.add(dp_audit_guarantee(result, epsilon, cfg.id))
