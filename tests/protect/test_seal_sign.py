"""Sealing and signing: round trips, every tampering rejected, wrong keys refused."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.core import models
from veil.core.io import load_model_bytes, save_model, tensors_equal
from veil.protect import (
    SealError,
    SignatureError,
    seal_bytes,
    seal_file,
    sign,
    unseal_bytes,
    unseal_file,
    verify,
)
from veil.protect.keys import KeyFileError, generate, load


@pytest.fixture(scope="module")
def alice(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    priv, pub = generate(d / "alice", "x25519")
    return load(priv, "x25519", True), load(pub, "x25519", False), priv, pub


def test_seal_unseal_model_round_trip(tmp_path, alice):
    spec = models.spec_of("mlp", (1, 8, 8), 10, hidden=[8])
    net = spec.build()
    path = save_model(tmp_path / "m.veil", net, spec)
    sealed = seal_file(path, alice[3], tmp_path / "m.sealed")
    assert path.read_bytes() not in sealed.read_bytes()
    loaded = load_model_bytes(unseal_file(sealed, alice[2]))
    assert tensors_equal(loaded.model, net)
    assert (alice[2].stat().st_mode & 0o777) == 0o600


@settings(max_examples=200, deadline=None)
@given(
    payload=st.binary(min_size=1, max_size=300), pos=st.integers(0, 10**6), bit=st.integers(0, 7)
)
def test_any_flipped_bit_is_rejected(alice, payload, pos, bit):
    blob = bytearray(seal_bytes(payload, alice[1]))
    assert unseal_bytes(bytes(blob), alice[0]) == payload
    blob[pos % len(blob)] ^= 1 << bit
    with pytest.raises(SealError):
        unseal_bytes(bytes(blob), alice[0])


def test_wrong_key_and_garbage(tmp_path, alice):
    _, other_pub = generate(tmp_path / "bob", "x25519")
    blob = seal_bytes(b"model", load(other_pub, "x25519", False))
    with pytest.raises(SealError, match="another key"):
        unseal_bytes(blob, alice[0])
    for junk in (b"", b"VEILSEAL", b"VEILSEAL\x00\x00\x00\x05{bad}", b"PK\x03\x04" * 10):
        with pytest.raises(SealError):
            unseal_bytes(junk, alice[0])
    with pytest.raises(KeyFileError, match="needs a x25519-private"):
        load(alice[3], "x25519", private=True)


def test_sign_verify_and_every_kind_of_tampering(tmp_path):
    priv, pub = generate(tmp_path / "signer", "ed25519")
    _, other_pub = generate(tmp_path / "other", "ed25519")
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"weights" * 100)
    b.write_bytes(b"config")
    manifest = sign([a, b], priv, tmp_path / "m.sig.json")
    assert verify(manifest, pub) == ["a.bin", "b.bin"]
    with pytest.raises(SignatureError, match="does not verify"):
        verify(manifest, other_pub)
    doc = json.loads(manifest.read_text())
    doc["files"][0]["sha256"] = "0" * 64
    forged = tmp_path / "forged.sig.json"
    forged.write_text(json.dumps(doc))
    with pytest.raises(SignatureError, match="does not verify"):
        verify(forged, pub)
    b.write_bytes(b"config!")
    with pytest.raises(SignatureError, match="b.bin does not match"):
        verify(manifest, pub)
    with pytest.raises(SignatureError, match="outside"):
        sign([a], priv, tmp_path / "sub" / "m.sig.json")
