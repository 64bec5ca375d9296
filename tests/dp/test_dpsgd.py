"""DP-SGD training: the noisy step, Poisson sampling, virtual batches, guarantees, input checks."""

import copy
import math

import pytest
import torch
from torch import nn

from veil import dp
from veil.core import data, models
from veil.core.errors import ConfigError
from veil.core.guarantees import Ledger
from veil.dp.dpsgd import NoisyStep, poisson_sample
from veil.dp.persample import make_engine


@pytest.fixture(scope="module")
def digits():
    return data.load("digits", "train"), data.load("digits", "test")


def _step(model, clip, sigma, physical=512, fixed=False, expected=None, n=64):
    engine = make_engine(model, clip, "layers")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(0)
    return NoisyStep(engine, opt, sigma, expected or n, gen, physical, fixed)


def test_noise_off_and_no_clipping_equals_plain_step(digits):
    train, _ = digits
    torch.manual_seed(0)
    a = models.build("mlp", (1, 8, 8), 10)
    b = copy.deepcopy(a)
    idx = torch.arange(64)
    _step(a, float("inf"), 0.0)(train, idx)
    opt = torch.optim.SGD(b.parameters(), lr=0.1)
    x, y = train.batch(idx)
    nn.functional.cross_entropy(b(x), y).backward()
    opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)


@pytest.mark.parametrize(("physical", "fixed"), [(7, False), (7, True), (64, True)])
def test_virtual_and_fixed_shape_batches_give_the_same_update(digits, physical, fixed):
    train, _ = digits
    torch.manual_seed(0)
    ref = models.build("mlp", (1, 8, 8), 10)
    other = copy.deepcopy(ref)
    idx = torch.arange(0, 120, 2)
    _step(ref, 0.3, 0.0, 512, False, n=60)(train, idx)
    _step(other, 0.3, 0.0, physical, fixed, n=60)(train, idx)
    for p, q in zip(ref.parameters(), other.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)


def test_noise_has_the_stated_scale(digits):
    train, _ = digits
    model = models.build("mlp", (1, 8, 8), 10)
    before = [p.detach().clone() for p in model.parameters()]
    step = _step(model, 1.0, 5.0, expected=1.0)
    step.optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    step(train, torch.tensor([], dtype=torch.long))  # an empty sample: pure noise
    moved = torch.cat(
        [(b - p.detach()).flatten() for b, p in zip(before, model.parameters(), strict=True)]
    )
    assert abs(moved.std().item() - 5.0) / 5.0 < 0.05


def test_poisson_sampling_rate():
    gen = torch.Generator().manual_seed(0)
    sizes = torch.tensor([len(poisson_sample(10_000, 0.02, gen)) for _ in range(200)]).float()
    assert abs(sizes.mean() - 200) < 5
    assert abs(sizes.var() - 10_000 * 0.02 * 0.98) / 196 < 0.3
    first = poisson_sample(100, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(first, poisson_sample(100, 0.5, torch.Generator().manual_seed(3)))


def test_train_end_to_end_gives_guarantee(digits):
    train, test = digits
    ledger = Ledger.start("t")
    net = models.build("mlp", train.input_shape, 10)
    res = dp.train(
        net,
        train,
        epsilon=4.0,
        delta=1e-5,
        epochs=4,
        batch_size=128,
        lr=0.1,
        eval_data=test,
        ledger=ledger,
        noise_seed=0,
        quiet=True,
    )
    g = res.guarantee
    assert ledger.entries == [g] and g.guarantee == "training-data"
    assert g.numbers["epsilon"] <= 4.0 and g.numbers["epsilon"] > 3.8
    assert g.evidence["epsilon_rdp"] > g.numbers["epsilon"]
    assert g.parameters["sampling"] == "Poisson" and g.parameters["steps"] == round(4 * 1347 / 128)
    assert "fixed seed" in g.parameters["noise"]
    curve = [e for _, e in res.epsilon_curve]
    assert curve == sorted(curve) and math.isclose(curve[-1], g.numbers["epsilon"], rel_tol=1e-9)
    assert res.final["accuracy"] > 0.5 and len(res.history) == 4


def test_sigma_instead_of_epsilon(digits):
    train, _ = digits
    net = models.build("mlp", train.input_shape, 10)
    res = dp.train(net, train, epsilon=None, sigma=2.0, epochs=1, batch_size=256, quiet=True)
    expected = dp.epsilon(2.0, 256 / len(train), round(len(train) / 256), 1e-5)
    assert res.guarantee.numbers["epsilon"] == pytest.approx(expected)
    assert "urandom" in res.guarantee.parameters["noise"]


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"epsilon": 0.0}, "epsilon must be > 0"),
        ({"clip": 0.0}, "clip norm"),
        ({"clip": float("inf")}, "clip norm"),
        ({"batch_size": 5000}, "batch_size"),
        ({"epsilon": 1e-4, "epochs": 50}, "raise ε"),
        ({"colour": 1}, "unknown DP-SGD setting"),
    ],
)
def test_bad_settings(digits, kw, msg):
    train, _ = digits
    with pytest.raises(ConfigError, match=msg):
        dp.train(models.build("mlp", train.input_shape, 10), train, quiet=True, **kw)


def test_delta_not_below_one_over_n_warns(digits):
    train, _ = digits
    with pytest.warns(UserWarning, match="below 1/n"):
        dp.train(
            models.build("mlp", train.input_shape, 10),
            train,
            delta=0.01,
            epochs=1,
            epsilon=None,
            sigma=1.0,
            quiet=True,
        )


def test_weight_average_is_released_and_recorded(digits):
    train, test = digits
    torch.manual_seed(0)
    plain = models.build("mlp", train.input_shape, 10)
    averaged = copy.deepcopy(plain)
    kw = dict(epsilon=None, sigma=1.0, epochs=2, batch_size=128, lr=0.1, noise_seed=3, quiet=True)
    dp.train(plain, train, **kw)
    res = dp.train(averaged, train, ema=0.9, eval_data=test, **kw)
    assert res.guarantee.parameters["weight_average"] == 0.9
    # same noise and sampling, so the released weights differ only by the averaging
    assert not torch.equal(plain[1].weight, averaged[1].weight)
    assert res.history[-1]["test_accuracy"] == res.final["accuracy"]
    with pytest.raises(ConfigError, match="ema"):
        dp.train(models.build("mlp", train.input_shape, 10), train, ema=1.5, quiet=True)
