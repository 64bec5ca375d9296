"""The enclave service: roles, budgets, the audit log; the owner's whole flow over HTTP."""

import shutil

import numpy as np
import pytest

from veil.enclave.attest import Evidence, Policy, SimulatedBackend
from veil.enclave.broker import KeyBroker
from veil.enclave.chunks import seal
from veil.enclave.runtime import Runtime
from veil.enclave.sandbox import Limits
from veil.enclave.service import Budget, create_app, verify_log

from .test_runtime import OPERATOR, _data

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap missing")
TOKENS = {"own": "owner", "op": "operator", "c1": "client", "c2": "client"}


@pytest.fixture
def service(tmp_path):
    from fastapi.testclient import TestClient

    (tmp_path / "rt.py").write_text("runtime")
    backend = SimulatedBackend([tmp_path / "rt.py"], b"policy", tmp_path / "platform")
    runtime = Runtime(
        backend, tmp_path / "store", Limits(wall_s=60, pad_s=0.1, result_bytes=4096), 1
    )
    app = create_app(runtime, TOKENS, Budget(rate=1000, burst=1000, rows=60), max_mb=1)
    with TestClient(app) as client:
        yield client, backend
    runtime.close()


def _h(token):
    return {"authorization": f"Bearer {token}"}


def test_owner_operator_client_flow_with_budgets_and_audit(service):
    http, backend = service
    data_key = bytes(range(32))
    broker = KeyBroker(data_key, Policy(frozenset({backend.measure().hex()}),
                                        frozenset({backend.platform_key().hex()})))  # fmt: skip
    nonce = broker.challenge()
    doc = http.get("/v1/attestation", params={"nonce": nonce.hex()}, headers=_h("own")).json()
    wrapped = broker.release(
        Evidence.from_json(doc["evidence"]), bytes.fromhex(doc["enclave_key"]), nonce
    )
    assert (
        http.put("/v1/datasets/clinic/key", content=wrapped, headers=_h("own")).status_code == 200
    )
    x, y, raw = _data()
    sealed = seal(raw, data_key, "clinic", 1000)
    assert http.put("/v1/datasets/clinic", content=sealed, headers=_h("own")).status_code == 200
    job = http.post("/v1/jobs", json={"dataset": "clinic", "code": OPERATOR, "classes": 3},
                    headers=_h("op")).json()  # fmt: skip
    assert job["status"] == "ok" and "weights" not in job
    url = f"/v1/models/{job['model']}/query"
    r = http.post(url, json={"rows": x[:40].tolist()}, headers=_h("c1"))
    assert r.status_code == 200 and np.mean(np.array(r.json()["labels"]) == y[:40]) > 0.9
    assert (
        http.post(url, json={"rows": x[:1].tolist(), "top_k": 2}, headers=_h("c1")).status_code
        == 403
    )
    assert http.post(url, json={"rows": x[:20].tolist()}, headers=_h("c1")).status_code == 200
    for _ in range(2):  # budget of 60 rows spent: refused, and stays refused
        assert http.post(url, json={"rows": x[:1].tolist()}, headers=_h("c1")).status_code == 429
    assert http.post(url, json={"rows": x[:5].tolist()}, headers=_h("c2")).status_code == 200
    audit = http.get("/v1/audit", headers=_h("own")).json()
    verify_log(audit["entries"], audit["head"])
    actions = [e["action"] for e in audit["entries"]]
    assert actions[:4] == ["attest", "key", "upload", "train"] and actions.count("query") == 3
    tampered = [dict(e) for e in audit["entries"]]
    tampered[1]["facts"] = {"dataset": "other"}
    with pytest.raises(ValueError, match="altered"):
        verify_log(tampered, audit["head"])
    with pytest.raises(ValueError, match="signed head"):
        verify_log(audit["entries"][:-1], audit["head"])


def test_who_is_asking(service):
    http, _ = service
    assert http.get("/v1/audit").status_code == 401
    assert http.get("/v1/audit", headers=_h("nope")).status_code == 401
    assert http.get("/v1/audit", headers=_h("c1")).status_code == 403
    assert http.post("/v1/jobs", json={}, headers=_h("own")).status_code == 403
    assert (
        http.put("/v1/datasets/x", content=b"x" * (2 << 20), headers=_h("own")).status_code == 413
    )
    bad = http.put("/v1/datasets/x", content=b"not sealed", headers=_h("own"))
    assert bad.status_code == 400 and "bad magic" in bad.json()["detail"]
    assert http.put("/v1/datasets/x/key", content=b"junk", headers=_h("own")).status_code == 400
