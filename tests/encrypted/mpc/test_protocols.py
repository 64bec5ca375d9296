"""Two-party protocols with a dealer, run in threads (veil.encrypted.mpc.protocols)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.encrypted.mpc.protocols import Party, run_local
from veil.encrypted.mpc.ring import decode, encode

UNIT = 2.0**-16


run = run_local  # program(party) on both parties, the dealer serving; results by rank


def shared(party, x):
    return party.share(0, encode(x) if party.rank == 0 else None, np.shape(x))


def reveal(party, share):
    out = party.reveal_to(1, share)
    return None if out is None else decode(out)


reals = st.floats(min_value=-1000, max_value=1000, allow_nan=False)


@settings(max_examples=25, deadline=None)
@given(st.lists(reals, min_size=1, max_size=16))
def test_reveal_of_share_is_the_encoding_exactly(xs):
    x = np.array(xs)
    _, got, _ = run(lambda p: p.reveal_to(1, shared(p, x)))
    assert torch.equal(got, encode(x))


@settings(max_examples=20, deadline=None)
@given(st.lists(st.tuples(reals, reals), min_size=1, max_size=16))
def test_products_are_within_the_fixed_point_bound(pairs):
    x, y = np.array(pairs).T
    _, got, _ = run(lambda p: reveal(p, p.mul(shared(p, x), shared(p, y))))
    # encoding errors (half a unit each, scaled by the other factor) plus one unit of truncation
    bound = (np.abs(x) + np.abs(y) + 2) * UNIT
    assert np.all(np.abs(got - x * y) <= bound)


def test_products_of_negatives_near_integers():
    x = np.array([-1.0, -2.0, -0.5, -1 + UNIT, -3.0, 1e-3])
    y = np.array([-1.0, 3.0, -0.5, -1.0, -(2**-16), -1.0])
    _, got, _ = run(lambda p: reveal(p, p.mul(shared(p, x), shared(p, y))))
    assert np.abs(got - x * y).max() <= 2 * UNIT


def test_matmul_matches_within_bound():
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(5, 7)), rng.normal(size=(7, 3))
    _, got, _ = run(lambda p: reveal(p, p.matmul(shared(p, x), shared(p, w))))
    assert np.abs(got - x @ w).max() <= (np.abs(x).sum(1).max() + np.abs(w).sum(0).max() + 2) * UNIT


EDGES = np.array([0.0, UNIT, -UNIT, 1.0, -1.0, 2.0**40, -(2.0**40), 2.0**45 - 1, -(2.0**45)])


def test_sign_and_relu_on_edge_values():
    def program(p):
        x = shared(p, EDGES)
        sign = p.reveal_to(1, p.bit_to_arith(p.sign_bit(x)))
        return sign, reveal(p, p.relu(x))

    _, (sign, relu), _ = run(program)
    assert sign.tolist() == [int(v < 0) for v in EDGES]
    assert np.array_equal(relu, np.maximum(EDGES, 0))


@settings(max_examples=15, deadline=None)
@given(st.lists(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False), min_size=1, max_size=32))
def test_relu_is_exact_on_random_values(xs):
    x = decode(encode(np.array(xs)))
    _, got, _ = run(lambda p: reveal(p, p.relu(shared(p, x))))
    assert np.array_equal(got, np.maximum(x, 0))


def test_one_partys_shares_look_uniform_whatever_the_input():
    n = 20_000
    for value in (0.0, 1.0, -123.5):
        shares, _, _ = run(lambda p, v=value: shared(p, np.full(n, v)))
        bits = np.unpackbits(shares.numpy().view(np.uint8)).reshape(n, 64)
        assert np.abs(bits.mean(0) - 0.5).max() < 0.02  # every bit position balanced


def test_traffic_is_counted():
    def program(p):
        p.relu(shared(p, np.ones(10)))
        return p.comm.traffic.to_dict()

    t0, t1, dealer = run(program)
    assert t0["rounds"] == t1["rounds"] >= 9
    assert t0["bytes_sent"] > 0 and dealer >= 14


def test_refuses_three_computing_parties():
    from veil.encrypted.mpc.comm import LocalNetwork
    from veil.encrypted.mpc.ring import PRG, MPCError

    with pytest.raises(MPCError, match="two computing parties"):
        Party(LocalNetwork(3).comm(0), PRG())


@settings(max_examples=20, deadline=None)
@given(st.lists(st.lists(reals, min_size=1, max_size=11), min_size=1, max_size=4), st.data())
def test_argmax_on_shares_is_the_first_maximum(rows, data):
    width = min(len(r) for r in rows)
    x = np.array([r[:width] for r in rows])
    if data.draw(st.booleans()):  # ties: the first maximum must win
        x[:, -1] = x.max(1)
    _, got, _ = run(lambda p: [p.reveal_to(1, t) for t in p.argmax(shared(p, x))])
    best, onehot = got
    first = encode(x).argmax(1)  # on the fixed-point values it computes on: the first maximum
    assert torch.equal(onehot, torch.nn.functional.one_hot(first, width))
    assert np.allclose(decode(best), x.max(1), atol=UNIT)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(reals, reals), min_size=1, max_size=16))
def test_maximum_on_shares(pairs):
    a, b = np.array(pairs).T
    _, got, _ = run(lambda p: reveal(p, p.maximum(shared(p, a), shared(p, b))))
    assert np.allclose(got, np.maximum(a, b), atol=UNIT)
