"""Gradient inversion: exact closed form on a linear layer; the optimisation attack recovers
an image from a full gradient and from a FedAvg update, DP noise or sparsification spoil
it; labels come back from a batch's bias gradient."""

import math

import pytest
import torch

from veil.audit.reconstruction import (
    audit,
    guarantee,
    invert,
    linear_closed_form,
    observe,
    recover_label,
    recover_labels,
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
    full = score(x, invert(net, observe(net, x, y), (1, 8, 8), labels, steps=300, tv_weight=0.0))
    noisy = observe(net, x, y, "dp", epsilon=1.0, seed=0)
    dp = score(x, invert(net, noisy, (1, 8, 8), labels, steps=300, tv_weight=0.0))
    sparse = observe(net, x, y, "dssgd", theta_up=0.1)
    dssgd = score(x, invert(net, sparse, (1, 8, 8), labels, steps=300, tv_weight=0.0))
    assert full["mean_psnr"] > 25 and full["recovered_fraction"] == 1.0
    assert dp["mean_psnr"] < full["mean_psnr"] - 10
    assert dssgd["mean_psnr"] < full["mean_psnr"] - 10
    assert sum(m.sum() for m in sparse.masks) == math.ceil(
        0.1 * sum(p.numel() for p in net.parameters())
    )


def test_bad_settings(example):
    net, x, y = example
    with pytest.raises(ConfigError):
        observe(net, x, y, "fedsgd")
    with pytest.raises(ConfigError):
        observe(net, x, y, "dp")
    with pytest.raises(ConfigError):
        observe(net, x, y, "dssgd", theta_up=0.0)
    with pytest.raises(ConfigError):
        observe(net, x, y, "fedavg", local_steps=0)
    with pytest.raises(ConfigError, match="1 to 8"):
        observe(net, x.repeat(9, 1, 1, 1), y.repeat(9))
    with pytest.raises(ConfigError, match="divide"):
        audit(net, x.repeat(3, 1, 1, 1), y.repeat(3), batch=2)


def test_fedavg_update_is_several_steps_and_still_leaks(example):
    net, x, y = example
    one = observe(net, x, y, "fedavg", local_steps=1, lr=0.5)
    five = observe(net, x, y, "fedavg", local_steps=5, lr=0.5)
    assert five.local_steps == 5 and five.lr == 0.5
    full = observe(net, x, y).grads
    assert all(torch.allclose(a, b) for a, b in zip(one.grads, full, strict=True))
    assert not torch.allclose(five.grads[0], one.grads[0], atol=1e-6)
    recon = invert(net, five, (1, 8, 8), y, steps=300, tv_weight=0.0)
    assert score(x, recon)["mean_psnr"] > 25


def test_batch_labels_are_recovered_as_a_multiset():
    x, y = data.load("digits", "test").batch(torch.arange(0, 40))
    torch.manual_seed(0)
    net = models.build("mlp", (1, 8, 8), 10, hidden=[32], activation="tanh")
    for idx in ([0, 1, 2, 3], [4, 4, 5, 6], [7, 7, 7, 8, 9, 10, 11, 12]):
        xb, yb = x[idx], y[idx]
        found = recover_labels(net, observe(net, xb, yb), (1, 8, 8), len(idx))
        assert found == sorted(yb.tolist())


def test_audit_scores_a_batch_and_keeps_images_for_the_report(example):
    net, *_ = example
    x, y = data.load("digits", "test").batch(torch.arange(10, 14))
    result = audit(net, x, y, "full", steps=200, batch=2)
    assert result["images"] == 4 and result["batch"] == 2
    assert len(result["best"]) == 4 and len(result["best"][0]["pixels"]) == 8
    assert result["label_recovery_accuracy"] == 1.0
    entry = guarantee(result, "full", {})
    assert "batch of 2" in entry.claim and entry.evidence["images"] == result["best"]
    assert entry.status == ("violated" if result["recovered"] else "supported")
