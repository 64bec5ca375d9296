"""The ``collab-train`` step: DSSGD or FedAvg across participants, guarantee into the ledger."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from veil.pipeline.steps import Artifact, RunContext, TrainingFields, register_step, save_trained


class CollabTrainConfig(TrainingFields):
    """Collaborative training (training-data privacy); ``epochs`` are rounds here."""

    kind: Literal["collab-train"]
    algo: Literal["dssgd", "fedavg"] = "dssgd"
    participants: int = Field(5, ge=1)
    partition: str = "iid"
    order: Literal["round-robin", "random", "async"] = "round-robin"
    theta_up: float = Field(0.1, gt=0, le=1)
    theta_down: float = Field(0.1, gt=0, le=1)
    upload: Literal["largest", "random", "svt"] = "largest"
    download: Literal["largest", "frequency", "recent"] = "largest"
    tau: float = Field(0.0, ge=0)
    gamma: float | None = Field(None, gt=0)
    staleness: int | None = Field(None, ge=0)
    residual: bool = False
    dp_epsilon: float | None = Field(None, gt=0)
    delta: float = Field(1e-5, gt=0, lt=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(0.1, gt=0)
    local_epochs: float = Field(1.0, gt=0)
    local_dp_sigma: float | None = Field(None, gt=0)
    fraction: float = Field(1.0, gt=0, le=1)
    fedavg_dp_sigma: float | None = Field(None, gt=0)
    clip: float = Field(1.0, gt=0)
    drop_rate: float = Field(0.0, ge=0, lt=1)
    engine: Literal["inprocess", "flower"] = "inprocess"
    secure: bool = False
    baselines: bool = False


@register_step("collab-train", CollabTrainConfig, produces="model")
def run_collab_train(cfg: CollabTrainConfig, ctx: RunContext) -> Artifact:
    from veil import collab
    from veil.core.train import Prepared

    config = collab.CollabConfig.from_flat(
        algo=cfg.algo,
        data=cfg.data,
        model=cfg.model,
        model_options=cfg.model_options,
        participants=cfg.participants,
        partition=cfg.partition,
        rounds=cfg.whole_epochs("epochs (rounds here)"),
        order=cfg.order,
        theta_up=cfg.theta_up,
        theta_down=cfg.theta_down,
        upload="svt" if cfg.dp_epsilon else cfg.upload,
        download=cfg.download,
        tau=cfg.tau,
        gamma=cfg.gamma,
        staleness=cfg.staleness,
        residual=cfg.residual,
        dp_epsilon=cfg.dp_epsilon,
        delta=cfg.delta,
        local_lr=cfg.lr,
        local_batch_size=cfg.batch_size,
        local_epochs=cfg.local_epochs,
        local_dp_sigma=cfg.local_dp_sigma,
        fedavg_fraction=cfg.fraction,
        fedavg_dp_sigma=cfg.fedavg_dp_sigma,
        fedavg_clip=cfg.clip,
        fedavg_secure=cfg.secure,
        fedavg_delta=cfg.delta,
        drop_rate=cfg.drop_rate,
        seed=cfg.seed_in(ctx),
        limit=cfg.limit,
    )
    result = collab.train(
        config, engine=cfg.engine, ledger=ctx.ledger, step=cfg.id, quiet=ctx.quiet
    )
    base = collab.baselines(config, quiet=ctx.quiet) if cfg.baselines else None
    prepared = Prepared(
        result.model,
        result.spec,
        result.train,
        result.test,
        {"limit": cfg.limit, "seed": cfg.seed_in(ctx)},
    )
    return save_trained(ctx, cfg, prepared, result.record(cfg.id, base))
