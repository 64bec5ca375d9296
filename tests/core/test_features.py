"""ScatterNet features: shapes, known values on constant images, stability to shifts, precompute."""

import pytest
import torch

from veil.core import data, models
from veil.core.features import Scattering2D, filter_bank
from veil.core.train import split_frozen


def test_shapes_and_channel_count():
    assert Scattering2D((1, 28, 28)).output_shape() == (81, 7, 7)
    s = Scattering2D((3, 32, 32))
    assert s(torch.rand(2, 3, 32, 32)).shape == (2, 3 * 81, 8, 8)
    assert Scattering2D((1, 16, 16), J=1, L=4).output_shape() == (5, 8, 8)
    with pytest.raises(ValueError):
        Scattering2D((1, 30, 30))


def test_wavelets_have_zero_mean_and_lowpass_unit_mass():
    psi, phi, index = filter_bank(36, 2, 8)
    assert len(index) == 16
    assert psi[:, 0, 0].abs().max() < 1e-5  # zero DC: wavelets ignore constants
    assert abs(float(phi[0, 0]) - 1.0) < 1e-5


def test_constant_image_gives_only_order_zero():
    out = Scattering2D((1, 28, 28))(torch.full((1, 1, 28, 28), 0.5))
    assert torch.allclose(out[:, 0], torch.full((1, 7, 7), 0.5), atol=1e-4)
    assert out[:, 1:].abs().max() < 1e-4


def test_stable_to_small_shifts():
    x = data.load("digits", "train").batch(torch.arange(32))[0]
    x = torch.nn.functional.interpolate(x, size=(32, 32))
    s = Scattering2D((1, 32, 32))
    shifted = torch.roll(x, 1, dims=-1)
    feature_change = (s(x) - s(shifted)).norm() / s(x).norm()
    pixel_change = (x - shifted).norm() / x.norm()
    assert feature_change < 0.6 * pixel_change


def test_precomputed_features_give_the_same_model_output():
    net = models.build("scatter-cnn", (1, 28, 28), 10).eval()
    ds = data.ArrayDataset(
        torch.rand(6, 1, 28, 28),
        torch.zeros(6, dtype=torch.long),
        classes=list("0123456789"),
        name="r",
        split="train",
    )
    head, (feats,) = split_frozen(net, ds)
    assert feats.input_shape == (81, 7, 7)
    x, _ = ds.batch(torch.arange(6))
    assert torch.allclose(head(feats.data), net(x), atol=1e-5)
    assert models.frozen_prefix(models.build("mlp", (4,), 2)) == 0
