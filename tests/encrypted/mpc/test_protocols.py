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


PARTIES = pytest.mark.parametrize("parties", [2, 3])


def run(program, parties: int = 2):
    """``program(party)`` on every party, the dealer serving; party 1's result."""
    return run_local(program, parties=parties)[1]


def shared(party, x):
    return party.share(0, encode(x) if party.rank == 0 else None, np.shape(x))


def reveal(party, share):
    out = party.reveal_to(1, share)
    return None if out is None else decode(out)


reals = st.floats(min_value=-1000, max_value=1000, allow_nan=False)


@PARTIES
@settings(max_examples=25, deadline=None)
@given(st.lists(reals, min_size=1, max_size=16))
def test_reveal_of_share_is_the_encoding_exactly(parties, xs):
    x = np.array(xs)
    got = run(lambda p: p.reveal_to(1, shared(p, x)), parties)
    assert torch.equal(got, encode(x))


@PARTIES
@settings(max_examples=20, deadline=None)
@given(st.lists(st.tuples(reals, reals), min_size=1, max_size=16))
def test_products_are_within_the_fixed_point_bound(parties, pairs):
    x, y = np.array(pairs).T
    got = run(lambda p: reveal(p, p.mul(shared(p, x), shared(p, y))), parties)
    # encoding errors (half a unit each, scaled by the other factor) plus one unit of truncation
    bound = (np.abs(x) + np.abs(y) + 2) * UNIT
    assert np.all(np.abs(got - x * y) <= bound)


@PARTIES
def test_products_of_negatives_near_integers(parties):
    x = np.array([-1.0, -2.0, -0.5, -1 + UNIT, -3.0, 1e-3])
    y = np.array([-1.0, 3.0, -0.5, -1.0, -(2**-16), -1.0])
    got = run(lambda p: reveal(p, p.mul(shared(p, x), shared(p, y))), parties)
    assert np.abs(got - x * y).max() <= 2 * UNIT


@PARTIES
def test_matmul_matches_within_bound(parties):
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(5, 7)), rng.normal(size=(7, 3))
    got = run(lambda p: reveal(p, p.matmul(shared(p, x), shared(p, w))), parties)
    assert np.abs(got - x @ w).max() <= (np.abs(x).sum(1).max() + np.abs(w).sum(0).max() + 2) * UNIT


EDGES = {
    64: np.array([0.0, UNIT, -UNIT, 1.0, -1.0, 2.0**40, -(2.0**40), 2.0**45 - 1, -(2.0**45)]),
    # 32-bit comparisons are exact below 2^31 units (32,768)
    32: np.array([0.0, UNIT, -UNIT, 1.0, -1.0, 1000.5, -1000.5, 32768 - UNIT, -32768.0]),
}


@PARTIES
@pytest.mark.parametrize("bits", [64, 32])
def test_sign_and_relu_on_edge_values(parties, bits):
    def program(p):
        x = shared(p, EDGES[bits])
        sign = p.reveal_to(1, p.bit_to_arith(p.sign_bit(x)))
        return sign, reveal(p, p.relu(x))

    sign, relu = run_local(program, parties=parties, compare_bits=bits)[1]
    assert sign.tolist() == [int(v < 0) for v in EDGES[bits]]
    assert np.array_equal(relu, np.maximum(EDGES[bits], 0))


@PARTIES
@settings(max_examples=15, deadline=None)
@given(st.lists(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False), min_size=1, max_size=32))
def test_relu_is_exact_on_random_values(parties, xs):
    x = decode(encode(np.array(xs)))
    got = run(lambda p: reveal(p, p.relu(shared(p, x))), parties)
    assert np.array_equal(got, np.maximum(x, 0))


@PARTIES
@settings(max_examples=10, deadline=None)
@given(st.lists(st.tuples(st.booleans(), reals), min_size=1, max_size=16))
def test_mux_gives_the_product_and_the_bit(parties, pairs):
    bits = torch.tensor([int(b) for b, _ in pairs])
    y = np.array([v for _, v in pairs])

    def program(p):
        s = bits if p.rank == 0 else torch.zeros_like(bits)  # XOR shares of the bits
        product, bit = p.mux(s, shared(p, y))
        return reveal(p, product), p.reveal_to(1, bit)

    product, bit = run(program, parties)
    assert bit.tolist() == bits.tolist()
    assert np.array_equal(product, np.where(bits.numpy() == 1, decode(encode(y)), 0.0))


def test_the_32_bit_bound_is_tight():
    # 32,768 wraps to -32,768 in 32 bits and reads as negative
    wrapped = run_local(
        lambda p: p.reveal_to(1, p.bit_to_arith(p.sign_bit(shared(p, np.array([32768.0]))))),
        compare_bits=32,
    )[1]
    assert wrapped.tolist() == [1]


@PARTIES
@settings(max_examples=10, deadline=None)
@given(st.lists(st.floats(min_value=-32767, max_value=32767), min_size=1, max_size=33))
def test_32_bit_relu_is_exact_on_random_values(parties, xs):
    x = decode(encode(np.array(xs)))  # odd lengths too: 32-bit words pair up in the triples
    got = run_local(lambda p: reveal(p, p.relu(shared(p, x))), parties=parties, compare_bits=32)
    assert np.array_equal(got[1], np.maximum(x, 0))


def test_32_bit_comparison_saves_a_round_and_half_the_adder_bytes():
    def program(p):
        p.relu(shared(p, np.ones(1000)))
        return p.comm.traffic.to_dict()

    full, half = (run_local(program, compare_bits=b)[0] for b in (64, 32))
    assert full["rounds"] - half["rounds"] == 1
    # 8 KB shared and 16 KB opened by the multiplexer either way; the adder opens 2 words
    # per AND: 12 ANDs of 8 bytes, or 10 of 4 bytes
    assert full["bytes_sent"] == 8000 * (1 + 2) + 8000 * 2 * 12
    assert half["bytes_sent"] == 8000 * (1 + 2) + 4000 * 2 * 10


@PARTIES
def test_one_partys_shares_look_uniform_whatever_the_input(parties):
    n = 20_000
    for value in (0.0, 1.0, -123.5):
        shares = run_local(lambda p, v=value: shared(p, np.full(n, v)), parties=parties)
        for share in shares[:parties]:  # the owner's and every other party's
            bits = np.unpackbits(share.numpy().view(np.uint8)).reshape(n, 64)
            assert np.abs(bits.mean(0) - 0.5).max() < 0.02  # every bit position balanced


def test_traffic_is_counted():
    def program(p):
        p.relu(shared(p, np.ones(10)))
        return p.comm.traffic.to_dict()

    t0, t1, dealer = run_local(program)
    assert t0["rounds"] == t1["rounds"] == 9  # share, 7 AND levels, the multiplexer
    assert t0["bytes_sent"] > 0 and dealer >= 13
    *three, dealer = run_local(program, parties=3)  # + the carry-save level
    assert [t["rounds"] for t in three] == [10, 10, 10]


def test_refuses_four_computing_parties():
    from veil.encrypted.mpc.comm import LocalNetwork
    from veil.encrypted.mpc.ring import PRG, MPCError

    with pytest.raises(MPCError, match="two or three computing parties"):
        Party(LocalNetwork(4).comm(0), PRG())


@PARTIES
@settings(max_examples=20, deadline=None)
@given(st.lists(st.lists(reals, min_size=1, max_size=11), min_size=1, max_size=4), st.data())
def test_argmax_on_shares_is_the_first_maximum(parties, rows, data):
    width = min(len(r) for r in rows)
    x = np.array([r[:width] for r in rows])
    if data.draw(st.booleans()):  # ties: the first maximum must win
        x[:, -1] = x.max(1)
    got = run(lambda p: [p.reveal_to(1, t) for t in p.argmax(shared(p, x))], parties)
    best, onehot = got
    first = encode(x).argmax(1)  # on the fixed-point values it computes on: the first maximum
    assert torch.equal(onehot, torch.nn.functional.one_hot(first, width))
    assert np.allclose(decode(best), x.max(1), atol=UNIT)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(reals, reals), min_size=1, max_size=16))
def test_maximum_on_shares(pairs):
    a, b = np.array(pairs).T
    got = run(lambda p: reveal(p, p.maximum(shared(p, a), shared(p, b))))
    assert np.allclose(got, np.maximum(a, b), atol=UNIT)


@PARTIES
def test_a_weight_masked_once_serves_many_products(parties):
    rng = np.random.default_rng(5)
    w = rng.normal(size=(7, 3))
    xs = [rng.normal(size=(4, 7)) for _ in range(3)]

    def program(p):
        weight = p.fix_weight(shared(p, w))
        before = p.comm.traffic.bytes_sent
        outs = [reveal(p, p.fixed_matmul(shared(p, x), weight)) for x in xs]
        return outs, p.comm.traffic.bytes_sent - before

    outs, sent = run(program, parties)
    for x, got in zip(xs, outs, strict=True):
        bound = (np.abs(x).sum(1).max() + np.abs(w).sum(0).max() + 2) * UNIT
        assert np.abs(got - x @ w).max() <= bound
    # each query opens its 4x7 masked input only, never the weights again
    assert sent == 3 * 4 * 7 * 8 * (parties - 1)
