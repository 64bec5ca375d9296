"""The ``enclave-train`` step: confined training on sealed data behind the enclave service.

It starts ``veil enclave serve`` on 127.0.0.1 (stopped by PID afterwards); the data owner
attests it and releases a key, uploads the training split sealed (one data set, or one per
site), the operator submits veil's bundled MLP code, and a client asks for labels of test
rows; the audit log is verified and the service's guarantees go in the ledger with the
label-only accuracy.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from veil.pipeline.scenario import StepConfig
from veil.pipeline.steps import RunContext, register_step


class EnclaveTrainConfig(StepConfig):
    """Train confined on a veil data set (the owner's records) and query the model."""

    kind: Literal["enclave-train"]
    data: str = "breast_cancer"
    sites: int = Field(1, ge=1, le=16)
    rounds: int = Field(10, ge=1)
    hidden: int = Field(32, ge=1)
    epochs: int = Field(30, ge=1)
    queries: int = Field(100, ge=1, le=1000)


def _operator(cfg: EnclaveTrainConfig, features: int, classes: int) -> str:
    from veil.enclave.operators import source

    code = source("mlp")
    for name, value in (("FEATURES", features), ("CLASSES", classes), ("HIDDEN", cfg.hidden),
                        ("EPOCHS", cfg.epochs)):  # fmt: skip
        code = code.replace(f"\n{name} = ", f"\n{name} = {value}  # was ", 1)
    return code


@register_step("enclave-train", EnclaveTrainConfig)
def run_enclave_train(cfg: EnclaveTrainConfig, ctx: RunContext) -> None:
    import json
    import os

    import numpy as np

    from veil.core import data as data_mod
    from veil.enclave.client import Client, policy_from, read_tokens
    from veil.enclave.client import service as enclave_service
    from veil.enclave.service import guarantees, verify_log

    classes = len(data_mod.load(cfg.data, "train").classes)
    x, y = data_mod.sample_arrays(cfg.data, "train", None, ctx.seed)
    x = x.reshape(len(x), -1)
    rows = np.c_[x, y].astype(np.float32)
    folder = ctx.out / "services" / cfg.id
    with enclave_service(folder, rows=cfg.queries, workers=1) as service:
        tokens = read_tokens(folder)
        owner = Client(service.url, tokens["owner"])
        names = [f"site{i}" for i in range(cfg.sites)]
        for name, part in zip(names, np.array_split(rows, cfg.sites), strict=True):
            key = os.urandom(32)
            owner.attest_and_release(name, key, policy_from(folder))
            owner.upload(name, part.tobytes(), key)
        code = _operator(cfg, x.shape[1], classes)
        job = Client(service.url, tokens["operator"]).submit(
            names[0] if cfg.sites == 1 else names, code, classes,
            0 if cfg.sites == 1 else cfg.rounds,
        )  # fmt: skip
        if job["status"] != "ok":
            from veil.core.errors import ScenarioError

            raise ScenarioError(f"step {cfg.id}: the confined training ended {job['status']}")
        tx, ty = data_mod.sample_arrays(cfg.data, "test", cfg.queries, ctx.seed)
        tx = tx.reshape(len(tx), -1)
        labels = Client(service.url, tokens["client"]).query(job["model"], tx)["labels"]
        audit = owner.audit()
        verify_log(audit["entries"], audit["head"])
    accuracy = float(np.mean(np.array(labels) == ty))
    platform = json.loads((folder / "platform.json").read_text())
    for g in guarantees(platform, audit, step=cfg.id):
        g.numbers.update({"accuracy_label_only": accuracy, "sites": cfg.sites})
        ctx.ledger.add(g)
