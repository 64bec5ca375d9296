"""Mechanisms: noise scales match their formulas; analytic Gaussian calibration; sparse vector."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.core.errors import ConfigError
from veil.dp.accounting import Accountant
from veil.dp.mechanisms import (
    _gaussian_delta,
    analytic_gaussian_sigma,
    gaussian,
    laplace,
    make_rng,
    sparse_vector,
)


def test_laplace_noise_scale_matches_formula():
    rel = laplace(np.zeros(200_000), sensitivity=2.0, epsilon=0.5, seed=1)
    assert rel.scale == 4.0
    assert abs(np.std(rel.value) - math.sqrt(2) * 4.0) / (math.sqrt(2) * 4.0) < 0.02
    assert abs(np.median(np.abs(rel.value)) - 4.0 * math.log(2)) < 0.1
    assert math.isclose(Accountant().add(rel.event).epsilon(1e-12), 0.5, rel_tol=2e-3)


def test_gaussian_noise_scale_matches_calibration():
    rel = gaussian(np.zeros(200_000), sensitivity=1.5, epsilon=1.0, delta=1e-5, seed=2)
    assert abs(np.std(rel.value) - rel.scale) / rel.scale < 0.02
    # the accountant certifies (about) the ε the mechanism was calibrated for
    assert Accountant().add(rel.event).epsilon(1e-5) <= 1.0 + 1e-3


@settings(max_examples=25, deadline=None)
@given(eps=st.floats(0.05, 10), log_delta=st.floats(-12, -2))
def test_analytic_gaussian_is_tight_and_beats_classical(eps, log_delta):
    delta = 10**log_delta
    sigma = analytic_gaussian_sigma(eps, delta)
    assert _gaussian_delta(eps, sigma) <= delta * (1 + 1e-6)
    assert _gaussian_delta(eps, sigma * 0.99) > delta  # the smallest such σ
    if eps < 1:
        assert sigma <= math.sqrt(2 * math.log(1.25 / delta)) / eps


def test_analytic_gaussian_matches_dp_accounting():
    import dp_accounting

    for eps, delta in [(0.5, 1e-5), (1.0, 1e-6), (4.0, 1e-3)]:
        ref = dp_accounting.get_sigma_gaussian(eps, delta)
        assert math.isclose(analytic_gaussian_sigma(eps, delta), ref, rel_tol=1e-3)


def test_secure_randomness_refuses_seed_and_differs():
    with pytest.raises(ConfigError):
        make_rng(1, secure=True)
    a, b = make_rng(secure=True).random(4), make_rng(secure=True).random(4)
    assert not np.array_equal(a, b)
    assert np.array_equal(make_rng(3).random(4), make_rng(3).random(4))


@settings(max_examples=30, deadline=None)
@given(values=st.lists(st.floats(-50, 50), min_size=1, max_size=40), c=st.integers(1, 4))
def test_sparse_vector_with_large_budget_finds_first_above(values, c):
    res = sparse_vector(values, threshold=0.0, epsilon=1e7, max_above=c, seed=0)
    expected = [i for i, v in enumerate(values) if v >= 1e-3][:c]
    clear = [i for i, v in enumerate(values) if abs(v) > 1e-3]
    if all(i in clear for i in range(res.answered)):
        assert res.above == expected
    assert len(res.above) <= c
    assert math.isclose(res.epsilon_threshold + res.epsilon_queries, 1e7)
    assert res.event.epsilon == 1e7


def test_sparse_vector_budget_split_default_is_optimal_ratio():
    res = sparse_vector([0.0], 0.0, 1.0, max_above=4, seed=0)
    ratio = res.epsilon_queries / res.epsilon_threshold
    assert math.isclose(ratio, 8 ** (2 / 3))
    mono = sparse_vector([0.0], 0.0, 1.0, max_above=4, monotonic=True, seed=0)
    assert math.isclose(mono.epsilon_queries / mono.epsilon_threshold, 4 ** (2 / 3))
    assert mono.details["query_scale"] == pytest.approx(4 / mono.epsilon_queries)


def test_sparse_vector_is_noisy_at_small_budget():
    answers = {tuple(sparse_vector([0.5] * 5, 0.0, 0.1, seed=s).above) for s in range(30)}
    assert len(answers) > 2  # the answer depends on the noise


@pytest.mark.parametrize(
    "bad",
    [
        lambda: laplace(1.0, 1.0, 0.0),
        lambda: gaussian(1.0, 1.0, 1.0, 1.5),
        lambda: sparse_vector([1], 0, 1.0, max_above=0),
        lambda: sparse_vector([1], 0, 1.0, threshold_share=1.0),
    ],
)
def test_bad_parameters(bad):
    with pytest.raises(ConfigError):
        bad()
