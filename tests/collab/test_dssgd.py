import numpy as np
import pytest

from veil import dp
from veil.collab.dssgd import DSSGDConfig, privacy_numbers, upload_epsilon
from veil.core.errors import ConfigError


def test_upload_budget_composes_to_the_whole_run_target():
    cfg = DSSGDConfig(gamma=0.01, dp_epsilon=8.0)
    eps_u = upload_epsilon(cfg, 50)
    whole = dp.Accountant().add(dp.PureEvent(eps_u, 50)).epsilon(1e-5)
    assert whole <= 8.0 and whole == pytest.approx(8.0, rel=0.01)
    assert eps_u > 8.0 / 50  # PLD composition beats the basic sum


def test_privacy_numbers_label_the_papers_per_parameter_figure():
    cfg = DSSGDConfig(theta_up=0.1, gamma=0.01, dp_epsilon=4.0)
    nums = privacy_numbers(cfg, 20, 0.5, 1000)
    assert nums["epsilon_per_parameter_paper"] == pytest.approx(0.5 / 100)
    assert nums["epsilon"] <= 20 * 0.5


@pytest.mark.parametrize(
    "kw",
    [
        {"theta_up": 0},
        {"theta_down": 1.1},
        {"upload": "best"},
        {"download": "oldest"},
        {"gamma": -1},
        {"dp_epsilon": 1.0},  # DP without a bound γ
        {"dp_epsilon": -1, "gamma": 1},
        {"staleness": -1},
    ],
)
def test_bad_settings_are_refused(kw):
    with pytest.raises(ConfigError):
        DSSGDConfig(**kw)


def test_limits_follow_theta_and_gamma():
    lim = DSSGDConfig(theta_up=0.1, gamma=0.5, staleness=3).limits(1000)
    assert (lim.max_count, lim.bound, lim.staleness) == (100, 0.5, 3)
    assert np.isclose(DSSGDConfig().limits(7).max_count, 1)


def test_residual_keeps_what_was_not_shared():
    from types import SimpleNamespace

    from veil.collab.dssgd import share

    rng = np.random.default_rng(0)
    p = SimpleNamespace(pid=0, data=[0] * 10, rng=rng, residual=None)
    cfg = DSSGDConfig(theta_up=0.1, residual=True)
    deltas = [rng.normal(size=200).astype(np.float32) for _ in range(3)]
    sent = np.zeros(200, np.float32)
    for d in deltas:
        u = share(p, d, 0, cfg, None)
        assert u.indices.size == 20
        sent[u.indices] += u.values
    assert np.allclose(sent + p.residual, np.sum(deltas, axis=0), atol=1e-5)
    plain = DSSGDConfig(theta_up=0.1)
    q = SimpleNamespace(pid=0, data=[0] * 10, rng=rng, residual=None)
    share(q, deltas[0], 0, plain, None)
    assert q.residual is None  # the paper's DSSGD keeps nothing
