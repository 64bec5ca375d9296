"""Gradient inversion: exact closed form on a linear layer; the optimisation attack recovers
an image from a full gradient, and DP noise or sparsification spoil it."""

import pytest
import torch

from veil.audit.reconstruction import (
    invert,
    linear_closed_form,
    observe,
    recover_label,
    score,
)
from veil.core import data, models
from veil.core.errors import ConfigError


@pytest.fixture(scope="module")
def example():
    x, y = data.load("digits", "test").batch(torch.arange(3, 4))
    torch.manual_seed(0)
    return models.build("mlp", (1, 8, 8), 10, hidden=[32], activation="tanh"), x, y


def test_closed_form_recovers_the_input_exactly(example):
    _, x, y = example
    linear = models.build("mlp", (1, 8, 8), 10, hidden=[16])
    recon = linear_closed_form(observe(linear, x, y)).view(1, 1, 8, 8)
    assert torch.allclose(recon, x, atol=1e-5)


def test_label_recovery_from_a_full_gradient(example):
    net, x, y = example
    assert recover_label(net, observe(net, x, y)) == int(y[0])


def test_full_gradient_leaks_and_dp_noise_spoils_it(example):
    net, x, y = example
    labels = torch.tensor([int(y[0])])
    full = score(x, invert(net, observe(net, x, y), (1, 8, 8), labels, steps=300, tv=0.0))
    noisy = observe(net, x, y, "dp", epsilon=1.0, seed=0)
    dp = score(x, invert(net, noisy, (1, 8, 8), labels, steps=300, tv=0.0))
    sparse = observe(net, x, y, "dssgd", theta_up=0.1)
    dssgd = score(x, invert(net, sparse, (1, 8, 8), labels, steps=300, tv=0.0))
    assert full["mean_psnr"] > 25 and full["recovered_fraction"] == 1.0
    assert dp["mean_psnr"] < full["mean_psnr"] - 10
    assert dssgd["mean_psnr"] < full["mean_psnr"] - 10
    assert sum(m.sum() for m in sparse.masks) == int(0.1 * sum(p.numel() for p in net.parameters()))


def test_bad_settings(example):
    net, x, y = example
    with pytest.raises(ConfigError):
        observe(net, x, y, "fedsgd")
    with pytest.raises(ConfigError):
        observe(net, x, y, "dp")
    with pytest.raises(ConfigError):
        observe(net, x, y, "dssgd", theta_up=0.0)
