"""Fixed-point encoding and the PRG (veil.encrypted.mpc.ring)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.encrypted.mpc.ring import PRG, MPCError, decode, encode

reals = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(reals, min_size=1, max_size=20))
def test_decode_encode_is_within_half_a_unit(xs):
    x = np.array(xs)
    assert np.abs(decode(encode(x)) - x).max() <= 2.0**-17 + 1e-9


@pytest.mark.parametrize("x", [-1.0, -0.5, -1 / 65536, -65535.0, -3.25])
def test_negatives_decode_exactly(x):  # CrypTen decoded some of these divided by 65535
    assert decode(encode(np.array([x])))[0] == x


def test_ring_wraps_modulo_2_64():
    big = torch.tensor([2**63 - 1], dtype=torch.int64)
    assert (big + 1).item() == -(2**63)
    assert ((big + 5) - 5).item() == 2**63 - 1


def test_encode_refuses_what_does_not_fit():
    with pytest.raises(MPCError, match="NaN"):
        encode(np.array([np.nan]))
    with pytest.raises(MPCError, match="below"):
        encode(np.array([2.0**47]))


def test_prg_streams_agree_and_differ():
    seed = bytes(range(32))
    a, b = PRG(seed), PRG(seed)
    assert torch.equal(a.int64((3, 5)), b.int64((3, 5)))
    assert not torch.equal(a.int64((100,)), PRG(bytes(32)).int64((100,)))
    first, second = a.int64((100,)), a.int64((100,))
    assert not torch.equal(first, second)  # a fresh block each draw


def test_prg_bits_are_balanced():
    bits = PRG().int64((200_000,))
    ones = np.unpackbits(bits.numpy().view(np.uint8)).mean()
    assert abs(ones - 0.5) < 0.002
