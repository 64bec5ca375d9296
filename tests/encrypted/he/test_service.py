"""The HE service's checks: who is asking, what they send (veil.encrypted.he.service)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from torch import nn

from veil.core.models import Square
from veil.encrypted.he import Client, EncryptedModel, compile_model, torch_logits
from veil.encrypted.he.service import create_app, mac

TOKEN = "t" * 32


@pytest.fixture(scope="module")
def served():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), Square(), nn.Linear(4, 3))
    server = EncryptedModel(compile_model(model, (6,)))
    http = TestClient(create_app(server, TOKEN, max_mb=8))
    http.headers["Authorization"] = f"Bearer {TOKEN}"
    client = Client(http.get("/v1/model").json(), ("batch",))
    body = client.public_bytes()
    context = http.post("/v1/context", content=body, headers={"X-Veil-MAC": mac(TOKEN, body)})
    return model, http, client, context


def _post(http, path, body, **headers):
    return http.post(path, content=body, headers={"X-Veil-MAC": mac(TOKEN, body), **headers})


def test_round_trip_over_http(served):
    model, http, client, context = served
    assert context.status_code == 200
    x = np.random.default_rng(0).normal(size=(3, 6))
    reply = _post(
        http,
        "/v1/infer",
        client.encrypt(x, "batch"),
        **{"X-Veil-Context": context.json()["context"]},
    )
    assert reply.status_code == 200
    assert reply.headers["x-veil-mac"] == mac(TOKEN, reply.content)
    assert np.abs(client.decrypt(reply.content) - torch_logits(model, x)).max() < 1e-3


def test_wrong_token_is_refused(served):
    _, http, _, _ = served
    assert http.get("/v1/model", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert http.get("/v1/model", headers={"Authorization": ""}).status_code == 401


def test_altered_body_is_refused(served):
    _, http, client, context = served
    body = client.encrypt(np.zeros((1, 6)), "batch")
    reply = http.post(
        "/v1/infer",
        content=body[:-1] + bytes([body[-1] ^ 1]),
        headers={"X-Veil-MAC": mac(TOKEN, body), "X-Veil-Context": context.json()["context"]},
    )
    assert reply.status_code == 400 and "MAC" in reply.text


def test_unknown_context_and_garbage_are_400(served):
    _, http, client, _ = served
    body = client.encrypt(np.zeros((1, 6)), "batch")
    assert _post(http, "/v1/infer", body, **{"X-Veil-Context": "nope"}).status_code == 400
    garbage = _post(http, "/v1/context", b"not a context")
    assert garbage.status_code == 400 and "bad magic" in garbage.text


def test_oversized_body_is_413(served):
    _, http, _, _ = served
    assert _post(http, "/v1/context", b"x" * (9 * 2**20)).status_code == 413


def test_short_token_is_refused():
    from veil.core.errors import VeilError

    with pytest.raises(VeilError, match="16 characters"):
        create_app(None, "short")
