"""Accounting: PLD matches Opacus' PRV within 1%, calibration inverts ε, composition is sound."""

import math
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.core.errors import ConfigError
from veil.dp.accounting import (
    Accountant,
    GaussianEvent,
    LaplaceEvent,
    PureEvent,
    calibrate_sigma,
    check_delta_for,
    epsilon,
)

CASES = [(4.45, 0.045, 673), (0.977, 0.045, 673), (1.1, 0.01, 6000), (3.0, 0.082, 875)]


@pytest.mark.parametrize(("sigma", "q", "steps"), CASES)
def test_pld_matches_opacus_prv_within_one_percent(sigma, q, steps):
    from opacus.accountants import PRVAccountant

    prv = PRVAccountant()
    prv.history = [(sigma, q, steps)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = prv.get_epsilon(1e-5)
    ours = epsilon(sigma, q, steps, 1e-5)
    assert abs(ours - reference) / reference <= 0.01
    # RDP is an independent, looser upper bound
    assert epsilon(sigma, q, steps, 1e-5, "rdp") >= ours


@settings(max_examples=4, deadline=None)
@given(
    target=st.floats(0.5, 8.0),
    q=st.sampled_from([0.004, 0.02, 0.1]),
    steps=st.sampled_from([100, 500]),
)
def test_calibrate_sigma_inverts_epsilon(target, q, steps):
    sigma = calibrate_sigma(target, q, steps, 1e-5)
    got = epsilon(sigma, q, steps, 1e-5)
    assert got <= target
    assert got >= 0.97 * target  # not needlessly noisy


def test_composition_of_mixed_events():
    gauss = GaussianEvent(1.0, 0.01, 1000)
    acc = Accountant().add(gauss)
    alone = acc.epsilon(1e-5)
    acc.add(LaplaceEvent(10.0, count=3)).add(PureEvent(0.2))
    both = acc.epsilon(1e-5)
    assert both > alone
    assert both <= alone + 0.3 + 0.2 + 1e-6  # basic composition bounds it
    rdp = Accountant("rdp").extend(acc.events).epsilon(1e-5)
    assert rdp >= both


def test_pure_events_compose_to_their_sum():
    acc = Accountant().add(PureEvent(0.25, count=4)).add(LaplaceEvent(2.0))
    assert math.isclose(acc.epsilon(1e-12), 1.5, rel_tol=2e-3)
    assert acc.delta(1.5 + 1e-3) < 1e-9


def test_no_events_means_no_loss():
    assert Accountant().epsilon(1e-5) == 0.0


@pytest.mark.parametrize(
    "bad",
    [
        lambda: GaussianEvent(0.0),
        lambda: GaussianEvent(1.0, q=1.5),
        lambda: LaplaceEvent(-1),
        lambda: PureEvent(float("inf")),
        lambda: Accountant("gdp"),
        lambda: epsilon(1.0, 0.01, 100, 0.0),
        lambda: calibrate_sigma(-1, 0.01, 100, 1e-5),
    ],
)
def test_bad_inputs_refused(bad):
    with pytest.raises(ConfigError):
        bad()


def test_sigma_beyond_sanity_refused():
    with pytest.raises(ConfigError, match="raise ε"):
        calibrate_sigma(1e-4, 1.0, 100_000, 1e-5)


def test_delta_above_one_over_n_warns():
    with pytest.warns(UserWarning, match="below 1/n"):
        check_delta_for(1e-2, 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_delta_for(1e-5, 1000)
