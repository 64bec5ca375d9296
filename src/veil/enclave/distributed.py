"""Training across several confined workers with a parameter server in the trusted runtime.

Chiron ran several enclaves that exchanged parameters through a parameter server. Here each
worker is a persistent confined process (:class:`ConfinedWorker`) holding one shard of the
data; the runtime is the parameter server: per round it sends every worker the global
parameters, each returns its locally trained parameters as one fixed-size record, and the
runtime averages them (weighted by shard size). Workers never talk to each other or to
anything else; the untrusted code never carries a message. Messages between the runtime and
each worker's (trusted) shim are fixed-size AES-256-GCM under a per-worker session key
(:class:`veil.enclave.confine.Channel`): across machines, that is what travels.

The operator's code defines ``load_shard(shard: bytes) -> state`` and ``local(state, params:
bytes) -> bytes``: given global parameters (float32), train locally and return the new ones;
given ``b""``, return the worker's initial parameters (round 0 takes worker 0's).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from veil.core.errors import VeilError
from veil.enclave.sandbox import ConfinedWorker, Limits


class DistributedError(VeilError):
    """A worker failed or answered out of shape; the job stops with nothing out."""


def train_distributed(code: str, shards: list[bytes], rounds: int,
                      limits: Limits | None = None) -> tuple[bytes, dict]:  # fmt: skip
    """Global parameters after ``rounds`` rounds over ``shards`` (one confined worker each)."""
    if not shards or rounds < 1:
        raise DistributedError("need at least one shard and one round")
    from dataclasses import replace

    limits = limits or Limits()
    limits = replace(limits, request_bytes=limits.result_bytes)  # parameters in = out bound
    weights = np.array([len(s) for s in shards], dtype=np.float64)
    weights /= weights.sum()
    workers: list[ConfinedWorker] = []
    try:
        for shard in shards:
            workers.append(ConfinedWorker(code, shard, "load_shard:local", limits, sealed=True))
        params = _ask(workers[0], b"", "initial parameters")
        size = len(params)
        with ThreadPoolExecutor(len(workers)) as pool:
            for r in range(rounds):
                what = f"round {r + 1}"
                outs = list(pool.map(_ask, workers, [params] * len(workers), [what] * len(workers)))
                if any(len(o) != size for o in outs):
                    raise DistributedError(f"round {r + 1}: a worker returned another size")
                stacked = np.stack([np.frombuffer(o, dtype=np.float32) for o in outs])
                params = (weights[:, None] * stacked).sum(0).astype(np.float32).tobytes()
    finally:
        for w in workers:
            w.close()
    return params, {"workers": len(shards), "rounds": rounds, "parameters": size // 4}


def _ask(worker: ConfinedWorker, request: bytes, what: str) -> bytes:
    out = worker.ask(request, timeout_s=worker.limits.wall_s)
    if out.status != "ok":
        raise DistributedError(f"{what}: a worker ended {out.status}"
                               + (f" ({out.signal})" if out.signal else ""))  # fmt: skip
    return out.result
