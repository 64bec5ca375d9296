import numpy as np
import pytest

from veil import dp
from veil.collab.fedavg import (
    FedAvgConfig,
    aggregate,
    clip_update,
    privacy_numbers,
    private_aggregate,
    sample_clients,
)
from veil.core.errors import ConfigError


def test_aggregate_is_the_sample_weighted_mean():
    a, b = np.array([1.0, 0.0], np.float32), np.array([0.0, 4.0], np.float32)
    assert aggregate([a, b], [3, 1]).tolist() == [0.75, 1.0]
    with pytest.raises(ConfigError):
        aggregate([], [])


def test_clip_bounds_the_norm_and_keeps_small_updates():
    big = np.full(100, 1.0, np.float32)
    assert np.linalg.norm(clip_update(big, 2.0)) == pytest.approx(2.0, rel=1e-6)
    small = np.full(4, 0.1, np.float32)
    assert clip_update(small, 2.0) is small


def test_private_aggregate_noise_matches_sigma():
    cfg = FedAvgConfig(fraction=0.5, dp_sigma=2.0, clip=1.0)
    out = private_aggregate([], 200_000, 10, cfg, np.random.default_rng(0))
    # noise std σ·C divided by the expected count q·N = 5
    assert np.std(out) == pytest.approx(2.0 / 5, rel=0.01)


def test_privacy_numbers_match_dp_accounting():
    cfg = FedAvgConfig(fraction=0.1, dp_sigma=1.0)
    assert privacy_numbers(cfg, 100)["epsilon"] == pytest.approx(
        dp.epsilon(1.0, 0.1, 100, 1e-5), rel=1e-9
    )


def test_client_sampling():
    rng = np.random.default_rng(0)
    assert len(sample_clients(10, FedAvgConfig(fraction=0.3), rng)) == 3
    counts = [len(sample_clients(100, FedAvgConfig(0.2, dp_sigma=1.0), rng)) for _ in range(200)]
    assert np.mean(counts) == pytest.approx(20, rel=0.1)  # Poisson under DP


def test_secure_aggregation_is_refused_where_it_cannot_hold():
    with pytest.raises(ConfigError, match="secure aggregation"):
        FedAvgConfig(secure=True, dp_sigma=1.0)
    with pytest.raises(ConfigError, match="secure aggregation"):
        FedAvgConfig(secure=True, fraction=0.5)
    from veil import collab

    cfg = collab.CollabConfig(algo="fedavg", data="digits", fedavg=FedAvgConfig(secure=True))
    with pytest.raises(ConfigError, match="engine='flower'"):
        collab.run(cfg, quiet=True)
