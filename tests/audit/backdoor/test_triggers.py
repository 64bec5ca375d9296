import pytest
import torch

from veil.audit.backdoor.triggers import (
    Generator,
    TriggerSet,
    checkerboard,
    default_size,
    stamp,
)
from veil.core.errors import ConfigError

SHAPE = (1, 28, 28)


def test_stamp_puts_the_patch_where_asked_and_nowhere_else():
    x = torch.zeros(2, 1, 10, 10)
    patch = torch.ones(2, 1, 3, 3)
    out = stamp(x, patch, torch.tensor([0, 7]), torch.tensor([2, 5]))
    assert out[0, 0, 0:3, 2:5].eq(1).all() and out[1, 0, 7:10, 5:8].eq(1).all()
    assert out.sum() == 18 and x.sum() == 0  # the input is untouched


def test_badnets_is_fixed_and_random_stays_in_its_targets_band():
    gen = torch.Generator().manual_seed(0)
    bad = TriggerSet("badnets", SHAPE, [3], 4, 10)
    rows, cols = bad.locations(torch.tensor([3, 3]), gen)
    assert rows.tolist() == [23, 23] and cols.tolist() == [23, 23]
    assert torch.equal(bad.patches(torch.tensor([3]), gen)[0], checkerboard(1, 4))
    rnd = TriggerSet("random", SHAPE, [1, 7], 4, 10)
    rows, _ = rnd.locations(torch.tensor([1] * 200 + [7] * 200), gen)
    assert rows[:200].max() < 12 <= rows[200:].min()  # two bands of 12 rows


def test_generators_make_patches_in_range_and_cban_depends_on_the_label():
    gen = torch.Generator().manual_seed(0)
    cban = TriggerSet("cban", SHAPE, [0, 1], 5, 10)
    torch.manual_seed(0)
    z = torch.rand(3, cban.generator.noise_dim)
    a = cban.generator(z, torch.tensor([0, 0, 0]))
    b = cban.generator(z, torch.tensor([1, 1, 1]))
    assert a.shape == (3, 1, 5, 5) and a.min() >= 0 and a.max() <= 1
    assert not torch.allclose(a, b)
    assert cban.patches(torch.tensor([0, 1]), gen).requires_grad
    assert isinstance(TriggerSet("ban", SHAPE, [2], 4, 10).generator, Generator)


@pytest.mark.parametrize(
    "args",
    [
        ("trojan", [0], 4),
        ("random", [0], 15),
        ("random", [10], 4),
        ("badnets", [0, 1], 4),
        ("ban", [], 4),
    ],
)
def test_bad_attack_settings_are_refused(args):
    method, targets, size = args
    with pytest.raises(ConfigError):
        TriggerSet(method, SHAPE, targets, size, 10)


def test_cban_spread_measures_how_far_apart_the_targets_patterns_are():
    torch.manual_seed(0)
    ts = TriggerSet("cban", (1, 12, 12), [0, 3], 4, 10)
    gen = torch.Generator().manual_seed(1)
    spread = ts.spread(16, gen)
    assert spread.requires_grad and 0 < float(spread.detach()) < 1
    spread.backward()  # the generator can be trained to raise it
    assert ts.generator.label[0].weight.grad.abs().sum() > 0
    with torch.no_grad():  # a generator blind to the label makes one pattern for both
        ts.generator.label[0].weight.zero_()
        ts.generator.label[0].bias.zero_()
    assert float(ts.spread(16, gen)) == 0.0


def test_ban_spread_measures_how_different_two_noise_draws_patterns_are():
    torch.manual_seed(0)
    ts = TriggerSet("ban", (1, 12, 12), [0], 4, 10)
    gen = torch.Generator().manual_seed(1)
    spread = ts.spread(16, gen)
    assert spread.requires_grad and 0 < float(spread.detach()) < 1
    spread.backward()  # the generator can be trained to raise it
    assert ts.generator.noise[0].weight.grad.abs().sum() > 0
    with torch.no_grad():  # a generator blind to the noise makes one constant trigger
        ts.generator.noise[0].weight.zero_()
    assert float(ts.spread(16, gen)) == 0.0


def test_default_trigger_size_is_a_fifth_of_the_side_and_always_fits():
    assert default_size((1, 28, 28)) == 6 and default_size((3, 32, 32)) == 6
    assert default_size((1, 8, 8)) == 2 and default_size((1, 3, 3)) == 1
    for side in range(2, 64):
        TriggerSet("random", (1, side, side), [0], default_size((1, side, side)), 10)
