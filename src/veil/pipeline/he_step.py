"""The ``serve-he`` step: serve an earlier model with CKKS, classify test data through it.

It starts ``veil he serve`` on 127.0.0.1 as a real service, runs a client batch against it
(encrypting here, decrypting here), stops it by PID, and checks agreement with the
plaintext model; the input- and output-privacy guarantees go in the ledger with the
measured error.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from veil.pipeline.scenario import StepConfig, ref
from veil.pipeline.steps import RunContext, register_step


class ServeHEConfig(StepConfig):
    """Encrypted inference against a model produced earlier in the scenario."""

    kind: Literal["serve-he"]
    uses: str = ref("model")
    limit: int = Field(100, ge=1, le=100_000)
    packing: Literal["auto", "batch", "vector"] = "auto"


@register_step("serve-he", ServeHEConfig)
def run_serve_he(cfg: ServeHEConfig, ctx: RunContext) -> None:
    import time

    import numpy as np

    from veil.core.data import sample_arrays
    from veil.core.io import load_model
    from veil.encrypted.he import torch_logits
    from veil.encrypted.he.inference import guarantees
    from veil.encrypted.he.service import Running

    art = ctx.artifact(cfg.uses, "model")
    loaded = load_model(art.path)
    x, y = sample_arrays(art.meta["data"], "test", cfg.limit, ctx.seed)
    with Running(art.path, ctx.out / "services" / cfg.id) as service:
        remote = service.client()
        start = time.perf_counter()
        logits = remote.infer(x, cfg.packing)
        seconds = time.perf_counter() - start
        remote.close()
    plain = torch_logits(loaded.model, x)
    timing = remote.client.timing
    numbers = {
        "images": len(x),
        "accuracy_encrypted": float((logits.argmax(1) == y).mean()),
        "argmax_agreement": float((logits.argmax(1) == plain.argmax(1)).mean()),
        "max_abs_error": float(np.abs(logits - plain).max()),
        "seconds": round(seconds, 3),
        "bytes_sent": timing.bytes_sent,
        "bytes_received": timing.bytes_received,
    }
    for g in guarantees(remote.client.spec, numbers, step=cfg.id):
        ctx.ledger.add(g)
