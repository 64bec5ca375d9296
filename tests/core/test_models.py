"""Model registry: shapes, parameter counts, clear errors, no BatchNorm."""

import pytest
import torch
from torch import nn

from veil.core import models
from veil.core.errors import ModelError


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("mlp", (30,)),
        ("mlp", (1, 8, 8)),
        ("mnist-cnn", (1, 28, 28)),
        ("cifar-cnn", (3, 32, 32)),
        ("lenet", (1, 28, 28)),
        ("lenet", (3, 32, 32)),
    ],
)
def test_builds_and_outputs_logits(name, shape):
    net = models.build(name, shape, 7)
    assert net(torch.randn(4, *shape)).shape == (4, 7)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


def test_mnist_cnn_is_the_literature_network():
    # Papernot et al. / Opacus MNIST example: 26,010 parameters for 10 classes
    assert models.count_parameters(models.build("mnist-cnn", (1, 28, 28), 10)) == 26010
    net = models.build("mnist-cnn", (1, 28, 28), 10)
    assert any(isinstance(m, nn.Tanh) for m in net.modules())


def test_group_norm_option():
    net = models.build("cifar-cnn", (3, 32, 32), 10, norm="group")
    assert sum(isinstance(m, nn.GroupNorm) for m in net.modules()) == 6
    with pytest.raises(ModelError, match="BatchNorm"):
        models.build("cifar-cnn", (3, 32, 32), 10, norm="batch")


@pytest.mark.parametrize(
    ("name", "shape", "msg"),
    [
        ("mnist-cnn", (30,), "image inputs"),
        ("lenet", (1, 8, 8), "at least"),
        ("resnet", (1, 8, 8), "unknown model"),
    ],
)
def test_bad_requests(name, shape, msg):
    with pytest.raises(ModelError, match=msg):
        models.build(name, shape, 10)


def test_bad_options_and_classes():
    with pytest.raises(ModelError, match="bad options"):
        models.build("mlp", (4,), 3, depth=5)
    with pytest.raises(ModelError, match="activation"):
        models.build("mlp", (4,), 3, activation="swishy")
    with pytest.raises(ModelError, match="2 classes"):
        models.build("mlp", (4,), 1)


def test_spec_round_trip_rebuilds_same_architecture():
    spec = models.spec_of("mlp", (1, 8, 8), 10, hidden=[16, 8])
    again = models.ModelSpec.from_dict(spec.to_dict())
    assert again == spec
    assert [p.shape for p in again.build().parameters()] == [
        torch.Size([16, 64]),
        torch.Size([16]),
        torch.Size([8, 16]),
        torch.Size([8]),
        torch.Size([10, 8]),
        torch.Size([10]),
    ]
    with pytest.raises(ModelError):
        models.ModelSpec.from_dict({"name": "mlp"})
