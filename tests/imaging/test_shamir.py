"""Shamir sharing over GF(2^8): exact recovery, k-1 shares uniform, tampering and mixing caught."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.imaging import gf256
from veil.imaging.shamir import Share, ShareError, combine, split


def test_field_axioms():
    a = np.arange(256, dtype=np.uint8)
    assert (gf256.mul(a, 1) == a).all() and (gf256.mul(a, 0) == 0).all()
    for x in range(1, 256):
        assert gf256.MUL[x, gf256.inv(x)] == 1
    b, c = np.uint8(7), np.uint8(200)
    assert (gf256.mul(a, b ^ c) == gf256.mul(a, b) ^ gf256.mul(a, c)).all()  # distributive
    assert gf256.MUL[0x57, 0x83] == 0xC1  # FIPS-197's worked example


@settings(max_examples=30, deadline=None)
@given(c=st.integers(0, 255), size=st.integers(4000, 9000), offset=st.integers(0, 1))
def test_scale_by_byte_pairs_equals_the_byte_table(c, size, offset):
    # long arrays go through a 65,536-entry table of byte pairs: odd lengths, views that
    # start at an odd byte and every constant must give what the 256-entry row gives
    arr = np.frombuffer(np.random.default_rng(size).bytes(size + 1), dtype=np.uint8)[offset:]
    assert np.array_equal(gf256.scale(c, arr), gf256.MUL[c][arr])


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(0, 5000),
    k=st.integers(2, 12),
    xs=st.lists(st.integers(1, 255), min_size=1, max_size=8, unique=True),
)
def test_compiled_polynomials_equal_horner_with_the_byte_table(size, k, xs):
    # the kernel doubles eight bytes of a word at a time and XORs the doublings that each
    # power of x selects; a byte-by-byte Horner's rule over MUL is the plain reference
    rng = np.random.default_rng(size + k)
    secret = rng.integers(0, 256, size, dtype=np.uint8)
    coeffs = rng.integers(0, 256, (k - 1, size), dtype=np.uint8)
    got = gf256.polynomials(secret, coeffs, xs)
    for t, x in enumerate(xs):
        acc = np.zeros(size, dtype=np.uint8)
        for c in coeffs[::-1]:
            acc = gf256.MUL[x][acc ^ c]
        assert np.array_equal(got[t], acc ^ secret)


@settings(max_examples=40, deadline=None)
@given(
    secret=st.binary(max_size=300),
    kn=st.tuples(st.integers(2, 6), st.integers(0, 4)),
    data=st.data(),
)
def test_any_k_of_n_recover_exactly(secret, kn, data):
    k, extra = kn
    n = k + extra
    shares = split(secret, k, n)
    chosen = data.draw(st.permutations(shares)).copy()[: data.draw(st.integers(k, n))]
    rec = combine(chosen)
    assert rec.secret == secret and rec.rejected == []
    assert combine([Share.from_bytes(s.to_bytes()) for s in chosen]).secret == secret


def test_k_minus_one_shares_are_uniform_whatever_the_secret():
    """Chi-square: for secrets 0x00 and 0xFF alike, 2 of 3-of-5 shares' bytes are uniform."""
    from scipy.stats import chisquare

    for byte in (0x00, 0xFF):
        pairs = np.concatenate(
            [
                np.frombuffer(s.payload[:16], dtype=np.uint8)
                for _ in range(400)
                for s in split(bytes([byte]) * 16, 3, 5)[:2]
            ]
        )
        counts = np.bincount(pairs, minlength=256)
        assert chisquare(counts).pvalue > 1e-4
    # and the joint distribution of the two shares' first byte carries no trace of the secret
    for byte in (0x00, 0xFF):
        joint = [tuple(s.payload[0] for s in split(bytes([byte]), 3, 5)[:2]) for _ in range(3000)]
        firsts = np.bincount([a ^ b for a, b in joint], minlength=256)
        assert chisquare(firsts).pvalue > 1e-4


@settings(max_examples=60, deadline=None)
@given(secret=st.binary(min_size=1, max_size=64), pos=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_flipped_bit_anywhere_is_detected(secret, pos, bit):
    shares = split(secret, 2, 4)
    blob = bytearray(shares[1].to_bytes())
    blob[pos % len(blob)] ^= 1 << bit
    try:
        tampered = Share.from_bytes(bytes(blob))
    except ShareError:
        return  # caught while parsing
    with pytest.raises(ShareError):  # with only k shares, recovery refuses
        combine([shares[0], tampered])
    try:
        rec = combine([shares[0], tampered, shares[2]])
    except ShareError:
        return  # refused: header fields disagree
    assert rec.secret == secret and tampered.index in rec.rejected  # never a wrong secret


def test_shares_of_different_sharings_never_mix():
    a, b = split(b"first", 2, 3), split(b"other", 2, 3)
    with pytest.raises(ShareError, match="from another sharing or tampered"):
        combine([a[0], b[1]])


def test_too_few_and_bad_parameters():
    shares = split(b"x" * 10, 3, 5)
    with pytest.raises(ShareError, match="needs 3"):
        combine(shares[:2])
    with pytest.raises(ShareError, match="needs 3"):
        combine([shares[0], shares[0], shares[1]])
    for k, n in [(1, 3), (4, 3), (2, 256)]:
        with pytest.raises(ShareError):
            split(b"x", k, n)


@given(blob=st.binary(max_size=200))
def test_parser_refuses_garbage_cleanly(blob):
    with pytest.raises(ShareError):
        Share.from_bytes(blob)


def test_every_k_subset_gives_the_same_secret():
    secret = bytes(range(256))
    shares = split(secret, 3, 5)
    for subset in itertools.combinations(shares, 3):
        assert combine(list(subset)).secret == secret
