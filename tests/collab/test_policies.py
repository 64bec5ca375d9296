import numpy as np
import pytest

from veil.collab.policies import count_for, private_selection, select_upload, top
from veil.core.errors import ConfigError


def test_count_for_rounds_up_and_checks_range():
    assert count_for(0.1, 95) == 10
    assert count_for(0.001, 10) == 1
    with pytest.raises(ConfigError):
        count_for(0.0, 10)
    with pytest.raises(ConfigError):
        count_for(1.5, 10)


def test_largest_upload_picks_largest_magnitudes():
    delta = np.array([0.1, -5.0, 0.3, 2.0, -0.2], np.float32)
    rng = np.random.default_rng(0)
    assert select_upload(delta, 2, "largest", 0.0, rng).tolist() == [1, 3]


def test_random_upload_only_above_threshold():
    delta = np.linspace(-1, 1, 1001).astype(np.float32)
    idx = select_upload(delta, 50, "random", 0.5, np.random.default_rng(0))
    assert idx.size == 50 and np.all(np.abs(delta[idx]) > 0.5)
    assert len(np.unique(idx)) == 50


def test_top_breaks_ties_by_index():
    assert top(np.zeros(6), 3).tolist() == [0, 1, 2]


def test_private_selection_bounds_count_and_values():
    rng = np.random.default_rng(1)
    delta = rng.normal(0, 1, 5000).astype(np.float32)
    sel = private_selection(delta, 100, epsilon=1.0, bound=0.5, tau=0.1, rng=rng)
    assert sel.indices.size <= 100
    assert np.all(np.abs(sel.values) <= 0.5)
    assert np.all(np.diff(sel.indices) > 0)


def test_private_selection_with_huge_budget_finds_what_is_above_threshold():
    delta = np.zeros(1000, np.float32)
    delta[[5, 50, 500]] = [0.9, -0.8, 0.7]
    sel = private_selection(
        delta, 10, epsilon=1e9, bound=1.0, tau=0.5, rng=np.random.default_rng(0)
    )
    assert sel.indices.tolist() == [5, 50, 500]
    assert np.allclose(sel.values, [0.9, -0.8, 0.7], atol=1e-3)


def test_private_value_noise_has_the_stated_scale():
    # one coordinate far above threshold, k=1: the value gets Lap(2γk/ε₂) with ε₂ = ε/9
    rng = np.random.default_rng(2)
    eps, gamma = 90.0, 100.0
    draws = [
        private_selection(np.array([50.0]), 1, epsilon=eps, bound=gamma, tau=0.0, rng=rng).values[0]
        - 50.0
        for _ in range(4000)
    ]
    scale = 2 * gamma / (eps / 9)  # 20
    assert np.std(draws) == pytest.approx(np.sqrt(2) * scale, rel=0.08)
