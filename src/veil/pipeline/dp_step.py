"""The ``dp-train`` step: DP-SGD training whose guarantee goes into the run's ledger."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from veil.pipeline.steps import Artifact, RunContext, TrainingFields, register_step, save_trained


class DPTrainConfig(TrainingFields):
    """DP-SGD training (training-data privacy): a target ε, or a noise multiplier σ."""

    kind: Literal["dp-train"]
    epsilon: float | None = Field(3.0, gt=0)
    delta: float = Field(1e-5, gt=0, lt=1)
    sigma: float | None = Field(None, gt=0)
    clip: float = Field(1.0, gt=0)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(0.5, gt=0)
    physical_batch: int = Field(512, ge=1)
    engine: Literal["auto", "layers", "vmap", "opacus"] = "auto"
    per_layer: bool = False
    fixed_shape: bool = False
    compile: bool = False
    accountant: Literal["pld", "rdp"] = "pld"
    ema: float | None = Field(None, gt=0, lt=1)
    noise_seed: int | None = None


@register_step("dp-train", DPTrainConfig, produces="model")
def run_dp_train(cfg: DPTrainConfig, ctx: RunContext) -> Artifact:
    from veil import dp
    from veil.core.train import training_record

    p = cfg.prepare(ctx)
    settings = cfg.model_dump(include=set(dp.DPConfig.__dataclass_fields__) - {"seed"})
    result = dp.train(
        p.model,
        p.train,
        dp.DPConfig(seed=cfg.seed_in(ctx), **settings),
        eval_data=p.test,
        ledger=ctx.ledger,
        step=cfg.id,
        quiet=ctx.quiet,
    )
    record = training_record(
        cfg.id,
        final=result.final,
        curves=result.curves(),
        details=p.details(result.seconds, str(next(p.model.parameters()).device)),
    )
    return save_trained(ctx, cfg, p, record)
