"""Compiling torch models into CKKS stages (veil.encrypted.he.compiler)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from veil.core.models import Square, build
from veil.encrypted.he import HEError, Quadratic2, compile_model, torch_logits
from veil.encrypted.he.compiler import Affine, Square2


def _random_input(shape, n=6, seed=0):
    return np.random.default_rng(seed).normal(size=(n, *shape))


@pytest.mark.parametrize(
    "model,shape",
    [
        (nn.Sequential(nn.Linear(12, 7), Square(), nn.Linear(7, 3)), (12,)),
        (
            nn.Sequential(
                nn.Conv2d(2, 3, 3, stride=2, padding=1),
                Square(),
                nn.Flatten(),
                nn.Linear(3 * 4 * 4, 4),
            ),
            (2, 8, 8),
        ),
        (
            nn.Sequential(
                nn.Conv2d(1, 4, 3),
                nn.BatchNorm2d(4),
                nn.AvgPool2d(2),
                Square(),
                nn.Flatten(),
                nn.Dropout(0.5),
                nn.Linear(4 * 3 * 3, 5),
            ),
            (1, 8, 8),
        ),
        (
            nn.Sequential(
                nn.Conv1d(2, 3, 3), Quadratic2(0.2, 0.5, 0.1), nn.Flatten(), nn.Linear(3 * 8, 2)
            ),
            (2, 10),
        ),
    ],
)
def test_compiled_logits_equal_torch(model, shape):
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2)
    model.eval()
    x = _random_input(shape)
    compiled = compile_model(model, shape)
    assert np.abs(compiled.forward(x) - torch_logits(model, x)).max() < 1e-10


def test_batchnorm_and_pooling_fold_into_the_conv():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.AvgPool2d(2),
        Square(),
        nn.Flatten(),
        nn.Linear(36, 5),
    ).eval()
    compiled = compile_model(model, (1, 8, 8))
    assert [type(s) for s in compiled.stages] == [Affine, Square2, Affine]
    assert compiled.depth == 3
    assert compiled.stages[0].layers == ("0", "1", "2")


def test_bias_folding_is_exact():
    lin1, lin2 = nn.Linear(5, 4), nn.Linear(4, 3)
    model = nn.Sequential(lin1, lin2).double()
    compiled = compile_model(model, (5,))
    (stage,) = compiled.stages
    w1, b1 = lin1.weight.detach().numpy(), lin1.bias.detach().numpy()
    w2, b2 = lin2.weight.detach().numpy(), lin2.bias.detach().numpy()
    assert np.allclose(stage.weight, w2 @ w1, atol=1e-15)
    assert np.allclose(stage.bias, w2 @ b1 + b2, atol=1e-15)


def test_quadratic_scale_and_offset_fold_into_the_next_layer():
    model = nn.Sequential(nn.Linear(4, 4), Quadratic2(2.0, 1.0, -0.5), nn.Linear(4, 2))
    compiled = compile_model(model, (4,))
    assert compiled.depth == 3
    assert compiled.stages[1].shift == 0.5


@pytest.mark.parametrize(
    "layer,hint",
    [
        (nn.ReLU(), "x²"),
        (nn.MaxPool2d(2), "AvgPool2d"),
        (nn.Softmax(dim=1), "logits"),
        (nn.Tanh(), "quadratic"),
        (nn.LSTM(3, 3), "not supported"),
    ],
)
def test_unsupported_layers_are_refused_by_name(layer, hint):
    model = nn.Sequential(nn.Linear(4, 4), layer, nn.Linear(4, 2))
    with pytest.raises(HEError, match=hint) as err:
        compile_model(model, (4,))
    assert "layer 1" in str(err.value)


def test_reference_networks_compile():
    compiled = compile_model(build("he-cnn", (1, 28, 28), 10), (1, 28, 28))
    assert compiled.depth == 5
    assert compiled.stages[0].max_row_nonzeros() == 25
    assert compile_model(build("he-mlp", (64,), 10), (64,)).depth == 3


def test_square_activations_keep_the_weights():
    from veil.core.models import spec_of
    from veil.encrypted.he.compiler import with_square_activations

    spec = spec_of("mlp", (6,), 3, hidden=[5])
    relu = spec.build()
    new_spec, squared = with_square_activations(spec, relu)
    assert new_spec.options["activation"] == "square"
    assert all(
        torch.equal(a, b) for a, b in zip(relu.parameters(), squared.parameters(), strict=True)
    )
    assert compile_model(squared, (6,)).depth == 3
    with pytest.raises(HEError, match="no activation"):
        with_square_activations(spec_of("he-cnn", (1, 8, 8), 10), build("he-cnn", (1, 8, 8), 10))
