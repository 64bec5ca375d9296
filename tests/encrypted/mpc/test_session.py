"""``Session``: every party and the dealer as threads, driven from one place."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.encrypted.mpc import Session
from veil.encrypted.mpc.ring import MPCError, decode, encode

UNIT = 2.0**-16
reals = st.floats(min_value=-100, max_value=100, allow_nan=False)


@pytest.mark.parametrize("parties", [2, 3])
@settings(max_examples=10, deadline=None)
@given(pairs=st.lists(st.tuples(reals, reals), min_size=1, max_size=8))
def test_arithmetic_and_relu_match_plaintext(parties, pairs):
    x, y = (decode(encode(np.array(v))) for v in zip(*pairs, strict=True))
    with Session(parties=parties) as s:
        a, b = s.share(0, x), s.share(parties - 1, y)
        assert np.array_equal(s.reveal_to(1, a), x)  # reveal(share(x)) is the encoding
        assert np.array_equal(s.reveal_to(0, a + b), x + y)
        assert np.array_equal(s.reveal_to(0, a - b), x - y)
        assert np.array_equal(s.reveal_to(1, a + 2.5), x + 2.5)
        assert np.all(np.abs(s.reveal_to(1, a * b) - x * y) <= (np.abs(x) + np.abs(y) + 2) * UNIT)
        assert np.array_equal(s.reveal_to(1, s.relu(a)), np.maximum(x, 0))
        assert np.array_equal(s.reveal_to(1, s.maximum(a, b)), np.maximum(x, y))


def test_a_small_network_on_shares():
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(4, 6)), rng.normal(size=(6, 3))
    with Session() as s:
        scores = s.relu(s.share(1, x) @ s.share(0, w))
        got = s.reveal_to(1, scores)
        onehot = s.reveal_to(1, s.argmax(scores))
        rounds = [t["rounds"] for t in s.traffic()]
    want = np.maximum(x @ w, 0)
    assert np.abs(got - want).max() < 1e-3
    assert np.array_equal(onehot.argmax(1), got.argmax(1)) and set(onehot.ravel()) <= {0, 1}
    assert rounds[0] == rounds[1] > 10


def test_a_failing_operation_surfaces_at_once_and_closes_the_session():
    s = Session()
    a, b = s.share(0, np.ones((2, 3))), s.share(1, np.ones((2, 3)))
    start = time.perf_counter()
    with pytest.raises(Exception, match="shape|size|mat"):
        s.matmul(a, b)  # (2, 3) @ (2, 3)
    assert time.perf_counter() - start < 10
    with pytest.raises(MPCError, match="closed"):
        s.share(0, np.ones(2))


def test_bad_sessions_are_refused():
    with pytest.raises(MPCError, match="two or three"):
        Session(parties=4)
    with pytest.raises(MPCError, match="trusted or client"):
        Session(dealer="somebody")
    with Session() as s, pytest.raises(MPCError, match="not in this session"):
        s.share(2, np.ones(1))
