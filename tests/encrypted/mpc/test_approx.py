"""exp, reciprocal and softmax on shares match their real values within stated bounds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.encrypted.mpc.approx import exp, newton_steps, reciprocal, softmax
from veil.encrypted.mpc.protocols import run_local
from veil.encrypted.mpc.ring import decode, encode

FRAC = 20


def _on_shares(fn, x: np.ndarray, parties: int = 2, frac: int = FRAC) -> np.ndarray:
    def program(party):
        mine = encode(x, frac) if party.rank == 0 else None
        out = party.reveal_to(1, fn(party, party.share(0, mine, x.shape)))
        return None if out is None else decode(out, frac)

    return run_local(program, frac, parties)[1]


@settings(max_examples=15, deadline=None)
@given(st.lists(st.floats(-12, 0), min_size=1, max_size=20))
def test_exp_of_non_positive_values(xs):
    x = np.array(xs)
    got = _on_shares(exp, x)
    # (1 + x/1024)^1024 vs e^x: relative x²/2048, plus rounding amplified by the squarings
    assert np.all(np.abs(got - np.exp(x)) <= np.exp(x) * (x**2 / 2000 + 2e-3) + 1e-5)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.floats(1, 10), min_size=1, max_size=20))
def test_reciprocal_on_its_range(xs):
    x = np.array(xs)
    got = _on_shares(lambda p, s: reciprocal(p, s, upper=10), x)
    assert np.all(np.abs(got * x - 1) < 1e-4)


def test_newton_steps_reach_the_resolution():
    assert newton_steps(10, 20) == 8 and newton_steps(1, 20) == 1
    e = 1 - 1 / 10
    assert e ** (2 ** newton_steps(10, 20)) < 2**-20 < e ** (2 ** (newton_steps(10, 20) - 1))


@pytest.mark.parametrize(
    ("parties", "frac", "bound"), [(2, 20, 2e-3), (3, 20, 2e-3), (2, 16, 8e-3)]
)
@settings(max_examples=10, deadline=None)
@given(st.lists(st.lists(st.floats(-8, 8), min_size=10, max_size=10), min_size=1, max_size=4))
def test_softmax_rows(parties, frac, bound, rows):
    x = np.array(rows)
    got = _on_shares(softmax, x, parties, frac)
    want = torch.softmax(torch.tensor(x), -1).numpy()
    assert np.abs(got - want).max() < bound and np.allclose(got.sum(-1), 1, atol=bound)
