"""Model inversion: a trained model gives class representatives away, white box and black
box within its query budget; an untrained one does not; the ledger entry says which."""

import pytest
import torch

from veil.audit.reconstruction import model as mi
from veil.core import data, models
from veil.core.errors import ConfigError


@pytest.fixture(scope="module")
def trained():
    x, y = data.load("digits", "train").batch(torch.arange(0, 1000))
    torch.manual_seed(0)
    net = models.build("mlp", (1, 8, 8), 10, hidden=[32])
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net, x, y


def test_oracle_counts_queries_and_refuses_past_its_budget(trained):
    net, x, _ = trained
    oracle = mi.Oracle(net, budget=10)
    assert torch.allclose(oracle(x[:6]).sum(-1), torch.ones(6))
    with pytest.raises(mi.BudgetExceeded):
        oracle(x[:5])
    assert oracle.used == 6


def test_class_mean_is_identified_and_scored_against_itself(trained):
    net, x, y = trained
    found = mi.evaluate(net, x[y == 4].mean(0), 4, x, y)
    assert found["identified"] and found["psnr_class_mean"] == 100.0
    assert found["baseline_psnr"] < 30


def test_white_and_black_box_recover_classes_of_a_trained_model(trained):
    net, x, y = trained
    white = mi.audit(net, x, y, list(range(10)), steps=300)
    black = mi.audit(net, x, y, [0, 1, 2, 3], black=True, queries=4000)
    assert white["identified"] >= 8 and white["mean_confidence"] > 0.9
    assert black["identified"] >= 3 and black["queries"] == 4000
    torch.manual_seed(1)
    untrained = models.build("mlp", (1, 8, 8), 10, hidden=[32])
    assert mi.audit(untrained, x, y, list(range(10)), steps=300)["identified"] <= 3
    entry = mi.guarantee(white)
    assert entry.status == "supported" and "class-level features" in entry.claim
    people = mi.guarantee({**white, "individuals": True})
    assert people.status == "violated" and len(people.evidence["images"]) == 10


def test_unknown_class_is_refused(trained):
    net, x, y = trained
    with pytest.raises(ConfigError, match="among"):
        mi.audit(net, x, y, [10])
