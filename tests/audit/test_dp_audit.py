"""One-run DP audit: the bound is right on known counts, large for a non-private model and
within the claim for a DP one."""

import pytest
import torch

from veil import dp
from veil.audit.dp_audit import (
    dp_audit_guarantee,
    epsilon_lower_bound,
    make_canaries,
    one_run_audit,
)
from veil.core import data, models
from veil.core.errors import ConfigError
from veil.core.train import fit


def test_bound_on_known_counts():
    assert epsilon_lower_bound(200, 100, 0.05) == 0.0  # chance-level guesses prove nothing
    perfect = epsilon_lower_bound(200, 200, 0.05)
    assert 3.5 < perfect < 4.5  # 0.05 ** (1/200) = 0.985 = e^ε / (1 + e^ε)
    assert epsilon_lower_bound(200, 150, 0.05) < perfect
    assert epsilon_lower_bound(0, 0, 0.05) == 0.0


def test_canaries_are_mislabelled_and_half_included():
    pool = data.load("digits", "test")
    canaries, inside, idx = make_canaries(pool, 400, seed=3)
    assert (canaries.targets != pool.targets[torch.as_tensor(idx)]).all()
    assert torch.equal(canaries.data, pool.data[torch.as_tensor(idx)])
    assert 150 < inside.sum() < 250
    with pytest.raises(ConfigError):
        make_canaries(pool, 1)


def _model(ds, eps=None):
    torch.manual_seed(0)
    net = models.build("mlp", ds.input_shape, 10, hidden=[128])
    if eps is None:
        fit(net, ds, epochs=40, lr=0.05, batch_size=32, quiet=True)
    else:
        # a fixed noise seed: with fresh noise the audit may refute ε 5% of the time
        settings = dict(epochs=10, batch_size=128, lr=0.5, momentum=0.0, noise_seed=7)
        dp.train(net, ds, epsilon=eps, quiet=True, **settings)
    return net


def test_non_private_model_gets_a_large_bound_and_dp_stays_under():
    train, pool = data.load("digits", "train"), data.load("digits", "test")
    plain = one_run_audit(_model, train, pool, canaries=400, guesses=100)
    assert plain.epsilon_lower_bound >= 1.0
    private = one_run_audit(lambda ds: _model(ds, 1.0), train, pool, canaries=400, guesses=100)
    assert private.epsilon_lower_bound <= 1.0
    assert dp_audit_guarantee(private, 1.0).status == "supported"
    assert dp_audit_guarantee(plain, 0.5).status == "violated"
