"""ABS-lite: the stimulation analysis finds a neuron wired to one label; the scan flags a
backdoored model's target by REASR and leaves a clean model alone."""

import copy

import pytest
import torch
from torch import nn

from veil.audit import backdoor
from veil.audit.backdoor.abs_scan import AbsConfig, abs_scan, split_at_last_hidden, stimulate
from veil.core.errors import ConfigError
from veil.core.train import fit, prepare


def test_split_at_the_last_hidden_activation():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    prefix, head, name = split_at_last_hidden(net)
    assert len(prefix) == 3 and len(head) == 1 and "ReLU" in name
    with pytest.raises(ConfigError, match="hidden activation"):
        split_at_last_hidden(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
    with pytest.raises(ConfigError, match="Sequential"):
        split_at_last_hidden(nn.Linear(4, 2))


def test_a_neuron_wired_to_one_label_is_the_top_candidate():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    with torch.no_grad():
        net[3].weight.mul_(0.1)
        net[3].weight[:, 4] = torch.tensor([0.0, 0.0, 5.0])  # neuron 4 votes for label 2
    prefix, head, _ = split_at_last_hidden(net)
    found = stimulate(prefix, head, torch.rand(10, 1, 2, 3), AbsConfig(stimulation=30))
    assert (found[0].neuron, found[0].label) == (4, 2) and found[0].elevation > 0


@pytest.fixture(scope="module")
def models():
    base = prepare("digits", "mlp", model_options={"hidden": [64]}, seed=0)
    clean = copy.deepcopy(base.model)
    fit(clean, base.train, epochs=30, batch_size=32, lr=1e-2, optimizer="adam", seed=0,
        device="cpu", quiet=True)  # fmt: skip
    cfg = backdoor.AttackConfig(method="badnets", targets=(3,), rate=0.2, size=2, epochs=30,
                                batch_size=32, lr=1e-2, optimizer="adam")  # fmt: skip
    bad = backdoor.train_backdoored(copy.deepcopy(base.model), base.train, base.test, cfg, True)
    return base.test, clean, bad


def test_scan_flags_the_target_and_not_the_clean_model(models):
    test, clean, bad = models
    assert bad.attack_success > 0.95
    cfg = AbsConfig(steps=150, bound=0.1)
    found = abs_scan(bad.model, test, cfg)
    assert found.flagged == [3] and found.max_reasr >= 0.9
    assert found.candidates[0].label == 3 and found.candidates[0].trigger.shape == (8, 8)
    assert not abs_scan(clean, test, cfg).backdoored
    assert all(p.requires_grad for p in bad.model.parameters())  # unfrozen afterwards
