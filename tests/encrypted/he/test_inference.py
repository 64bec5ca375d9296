"""Client and server of encrypted inference (veil.encrypted.he.inference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from veil.core.models import Square
from veil.encrypted.he import (
    Client,
    EncryptedModel,
    HEError,
    choose_packing,
    compile_model,
    torch_logits,
)
from veil.encrypted.he.ckks import pack, unpack


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 6), Square(), nn.Linear(6, 3))
    x = np.random.default_rng(0).normal(size=(4, 12))
    server = EncryptedModel(compile_model(model, (12,)), sample=x)
    client = Client(server.spec())
    return model, x, server, client, client.public()


@pytest.mark.parametrize("packing", ["batch", "vector"])
def test_round_trip_agrees_with_plaintext(setup, packing):
    model, x, server, client, public = setup
    logits = client.decrypt(server.evaluate(public, client.encrypt(x, packing)))
    ref = torch_logits(model, x)
    assert logits.shape == ref.shape
    assert np.array_equal(logits.argmax(1), ref.argmax(1))
    assert np.abs(logits - ref).max() < 1e-3


def test_spec_carries_no_weights(setup):
    _, _, server, _, _ = setup
    spec = server.spec()
    assert set(spec) == {
        "input_shape",
        "num_classes",
        "depth",
        "params",
        "rotation_steps",
        "vector",
        "cost",
    }
    assert spec["vector"]["gather"] is None  # a dense first layer: nothing about it is sent


def test_packing_follows_request_size(setup):
    spec = setup[2].spec()
    assert choose_packing(spec, 1) == "vector"
    assert choose_packing(spec, 4096) == "batch"


def test_tampered_ciphertext_is_rejected(setup):
    _, x, server, client, public = setup
    request = bytearray(client.encrypt(x, "batch"))
    request[len(request) // 2] ^= 0x01  # one bit flipped in transit
    with pytest.raises(HEError, match="altered"):
        server.evaluate(public, bytes(request))


def test_reply_tampering_is_detected_by_the_client(setup):
    _, x, server, client, public = setup
    reply = bytearray(server.evaluate(public, client.encrypt(x, "batch")))
    reply[-100] ^= 0x80
    with pytest.raises(HEError, match="altered"):
        client.decrypt(bytes(reply))


def test_ciphertext_from_other_keys_is_rejected(setup):
    _, x, server, client, public = setup
    deeper = Client(
        {
            **server.spec(),
            "params": {**server.spec()["params"], "bits": [50, 30, 30, 30, 50], "scale_bits": 30},
        }
    )
    with pytest.raises(HEError):
        server.evaluate(public, deeper.encrypt(x, "batch"))


def test_context_without_enough_levels_is_refused(setup):
    _, x, server, _, _ = setup
    shallow = Client(
        {**server.spec(), "params": {"n": 8192, "bits": [60, 40, 60], "scale_bits": 40}}
    )
    with pytest.raises(HEError, match="levels"):
        server.evaluate(shallow.public(), shallow.encrypt(x, "batch"))


def test_bad_request_header_is_refused(setup):
    _, x, server, client, public = setup
    header, blobs = unpack(client.encrypt(x, "batch"), "ciphertexts")
    with pytest.raises(HEError, match="packing"):
        server.evaluate(public, pack("ciphertexts", {**header, "packing": "zip"}, blobs))
    with pytest.raises(HEError, match="count"):
        server.evaluate(public, pack("ciphertexts", {**header, "count": 0}, blobs))
