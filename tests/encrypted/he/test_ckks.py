"""CKKS parameters, keys and message bytes (veil.encrypted.he.ckks)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.encrypted.he import Context, HEError, Params, PublicContext, choose_params
from veil.encrypted.he.ckks import SECURITY_BITS, galois_element, max_depth, pack, unpack


@pytest.fixture(scope="module")
def context() -> Context:
    return Context(choose_params(2), steps=[1, 4])


@pytest.mark.parametrize("depth", [1, 2, 3, 5, 8, 12])
def test_chosen_params_fit_128_bit_security(depth):
    p = choose_params(depth)
    assert p.levels == depth
    assert p.total_bits <= SECURITY_BITS[p.n]
    assert p.scale_bits >= 30
    assert p.bits[0] >= p.scale_bits + 20  # headroom for the integer part


def test_smallest_ring_is_chosen():
    assert choose_params(3).n == 8192
    assert choose_params(5).n == 16384


def test_too_deep_is_refused_with_the_limit():
    most = max_depth()
    with pytest.raises(HEError, match=f"{most} levels"):
        choose_params(most + 1)


def test_insecure_params_are_refused():
    with pytest.raises(HEError, match="128-bit"):
        Params(8192, (60, 40, 40, 40, 60), 40)


def test_public_bytes_carry_no_secret_key(context):
    data = context.public_bytes()
    header, blobs = unpack(data, "public context")
    assert header["parts"] == ["params", "public", "relin", "galois"]
    server = PublicContext.from_bytes(data)
    assert not server.has_secret_key
    assert not hasattr(server, "decrypt")
    assert server.steps == (1, 4)


def test_public_context_refuses_a_secret_part(context):
    header, blobs = unpack(context.public_bytes(), "public context")
    forged = pack(
        "public context", {**header, "parts": ["params", "secret", "relin", "galois"]}, blobs
    )
    with pytest.raises(HEError, match="may hold only"):
        PublicContext.from_bytes(forged)


def test_encrypt_decrypt_round_trip(context):
    x = np.linspace(-3, 3, context.params.slots)
    assert np.abs(context.decrypt(context.encrypt(x)) - x).max() < 2.0 ** (
        20 - context.params.scale_bits
    )


def test_encrypt_refuses_nan_and_overflow(context):
    with pytest.raises(HEError, match="NaN"):
        context.encrypt(np.array([np.nan]))
    with pytest.raises(HEError, match="slots"):
        context.encrypt(np.zeros(context.params.slots + 1))


def test_galois_elements_match_seal_rotations(context):
    x = np.arange(context.params.slots, dtype=float)
    ct, out = context.encrypt(x), context.ring.ciphertext()
    context.ring.evaluator.rotate_vector(ct, 4, context.galois_keys, out)
    assert np.allclose(context.decrypt(out)[:3], [4, 5, 6], atol=1e-3)
    assert galois_element(1, 8192) == 3
    with pytest.raises(HEError):
        galois_element(4096, 8192)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300))
def test_unpack_refuses_garbage(data):
    with pytest.raises(HEError):
        unpack(data, "ciphertexts")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.binary(max_size=50), max_size=5),
    st.dictionaries(st.text(max_size=5), st.integers()),
)
def test_pack_unpack_round_trip(blobs, header):
    header.pop("kind", None)
    header.pop("sizes", None)
    got_header, got = unpack(pack("ciphertexts", header, blobs), "ciphertexts")
    assert got == blobs
    assert {k: got_header[k] for k in header} == header


def test_unpack_refuses_truncation_and_other_kinds():
    data = pack("ciphertexts", {}, [b"abc", b"de"])
    with pytest.raises(HEError, match="payload"):
        unpack(data[:-1], "ciphertexts")
    with pytest.raises(HEError, match="expected"):
        unpack(data, "public context")


def test_for_model_names_the_layer_that_is_one_too_many():
    from torch import nn

    from veil.core.models import Square

    layers = [nn.Linear(4, 4)]
    for _ in range(max_depth()):
        layers += [Square(), nn.Linear(4, 4)]
    with pytest.raises(HEError, match="one too many"):
        Context.for_model(nn.Sequential(*layers), input_shape=(4,))
