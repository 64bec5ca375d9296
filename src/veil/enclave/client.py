"""Talking to ``veil enclave serve``: the owner's attest-and-release, uploads, jobs, queries.

The service folder holds what each party is given: ``tokens.json`` (one token per role,
0600) and ``platform.json`` (the measurement and platform key the owner's policy should
trust; with real hardware the measurement comes from a reproducible build of the runtime
and the platform key from the vendor's certificate chain).
"""

from __future__ import annotations

import json
from pathlib import Path

from veil.core.errors import VeilError
from veil.enclave.attest import Evidence, Policy


class ServiceError(VeilError):
    """The service refused a request (the message says why)."""


class Client:
    def __init__(self, url: str, token: str, timeout: float = 600.0):
        import httpx

        self.http = httpx.Client(base_url=url, timeout=timeout,
                                 headers={"authorization": f"Bearer {token}"})  # fmt: skip

    def _call(self, method: str, path: str, **kw) -> dict:
        from veil.core.net import json_reply

        send = lambda: self.http.request(method, path, **kw)  # noqa: E731
        return json_reply(send, f"enclave service ({method} {path})", ServiceError)

    def attest_and_release(self, dataset: str, data_key: bytes, policy: Policy) -> str:
        """Verify the enclave (fresh nonce) and release ``data_key`` wrapped for it."""
        from veil.enclave.broker import KeyBroker

        broker = KeyBroker(data_key, policy)
        nonce = broker.challenge()
        evidence, enclave_key = self.attestation(nonce)
        wrapped = broker.release(evidence, enclave_key, nonce)
        self._call("PUT", f"/v1/datasets/{dataset}/key", content=wrapped)
        return evidence.measurement.hex()

    def attestation(self, nonce: bytes) -> tuple[Evidence, bytes]:
        """The service's quote for ``nonce`` and the enclave key it vouches for."""
        doc = self._call("GET", "/v1/attestation", params={"nonce": nonce.hex()})
        return Evidence.from_json(doc["evidence"]), bytes.fromhex(doc["enclave_key"])

    def upload(self, dataset: str, data: bytes, data_key: bytes) -> int:
        from veil.enclave.chunks import seal

        return self._call("PUT", f"/v1/datasets/{dataset}", content=seal(data, data_key, dataset))[
            "bytes"
        ]

    def submit(self, dataset: str | list[str], code: str, classes: int, rounds: int = 0) -> dict:
        body = {"dataset": dataset, "code": code, "classes": classes, "rounds": rounds}
        return self._call("POST", "/v1/jobs", json=body)

    def query(self, model: str, rows, top_k: int = 0) -> dict:
        import numpy as np

        body = {"rows": np.asarray(rows, dtype=np.float32).tolist(), "top_k": top_k}
        return self._call("POST", f"/v1/models/{model}/query", json=body)

    def audit(self) -> dict:
        return self._call("GET", "/v1/audit")

    def close(self) -> None:
        self.http.close()


def read_tokens(folder: Path) -> dict[str, str]:
    """Role -> token, from a service folder's ``tokens.json``."""
    try:
        doc = json.loads((Path(folder) / "tokens.json").read_text())
    except (OSError, ValueError) as e:
        raise ServiceError(f"cannot read {folder}/tokens.json: {e}") from e
    return {role: tokens[0] for role, tokens in doc.items()}


def policy_from(folder: Path) -> Policy:
    """The policy an owner builds from the service's published ``platform.json``."""
    doc = json.loads((Path(folder) / "platform.json").read_text())
    return Policy(frozenset({doc["measurement"]}), frozenset({doc["platform_key"]}))


def service(folder: Path, **options):
    """``veil enclave serve`` for ``folder`` on a port of 127.0.0.1 the system chooses, as a
    context manager that stops it by PID; ``options`` are serve's (``rows=100, workers=1``,
    ...)."""
    from veil.core.net import ServiceProcess

    args = ["enclave", "serve", "--folder", str(folder)]
    for name, value in options.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    return ServiceProcess(args, "/v1/audit", "enclave service")
