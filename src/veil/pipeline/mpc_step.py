"""The ``serve-mpc`` step: classify test data with an earlier model on secret shares.

The computing parties and the dealer start as processes on 127.0.0.1 (stopped by PID when
the batch is done, or on failure); the model owner's party and the input owner's party
never see each other's secrets. Agreement with the plaintext model is measured and goes in
the ledger with the input- and output-privacy guarantees.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from veil.pipeline.scenario import StepConfig, ref
from veil.pipeline.steps import RunContext, register_step


class ServeMPCConfig(StepConfig):
    """Private inference on shares (veil.encrypted.mpc) against an earlier step's model."""

    kind: Literal["serve-mpc"]
    uses: str = ref("model")
    limit: int = Field(100, ge=1, le=100_000)
    parties: Literal[2, 3] = 2
    labels_only: bool = False
    engine: Literal["processes", "threads"] = "processes"
    compare_bits: Literal["auto", "32", "64"] = "auto"
    input_range: str = "0,1"
    dealer: Literal["trusted", "client"] = "trusted"


@register_step("serve-mpc", ServeMPCConfig)
def run_serve_mpc(cfg: ServeMPCConfig, ctx: RunContext) -> None:
    from veil.encrypted.mpc.infer import infer_saved
    from veil.encrypted.mpc.model import guarantees

    art = ctx.artifact(cfg.uses, "model")
    _, numbers, bits = infer_saved(art.path, art.meta["data"], cfg.limit, cfg.engine,
                                   cfg.labels_only, cfg.parties, cfg.compare_bits,
                                   cfg.input_range, cfg.dealer)  # fmt: skip
    for g in guarantees(numbers, cfg.id, cfg.labels_only, cfg.parties, bits, cfg.dealer):
        ctx.ledger.add(g)
