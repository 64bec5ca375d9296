"""Membership inference: attacks find an overfit model's members; figures and bounds are right."""

import numpy as np
import pytest
import torch

from veil.audit import audit_guarantee, dp_bound_holds, membership
from veil.audit.membership import evaluate_attack, logit_confidence, tpr_at_fpr
from veil.core import data, models
from veil.core.errors import ConfigError
from veil.core.guarantees import Ledger
from veil.core.train import fit
from veil.report import render_html


def _train(ds):
    torch.manual_seed(len(ds))
    net = models.build("mlp", ds.input_shape, 10, hidden=[128])
    fit(net, ds, epochs=40, lr=0.05, batch_size=32, quiet=True)
    return net


@pytest.fixture(scope="module")
def overfit(request):
    train = data.load("digits", "train")
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    members, nonmembers = train.subset(perm[:300]), train.subset(perm[300:600])
    return _train(members), members, nonmembers


def test_lira_beats_chance_and_the_threshold_attack(overfit):
    target, members, nonmembers = overfit
    lira = membership(
        target, members, nonmembers, "lira", train_fn=_train, n_reference=8, quiet=True
    )
    threshold = membership(target, members, nonmembers, "threshold")
    shadow = membership(
        target, members, nonmembers, "shadow", train_fn=_train, n_reference=4, quiet=True
    )
    assert lira.auc > 0.6 and lira.auc >= threshold.auc - 0.02
    assert shadow.auc > 0.52  # weaker than LiRA, but above chance
    assert lira.n_members == 300 and len(lira.exposed) == 10
    assert all(0 <= i < 300 for i in lira.exposed)  # indices of members only
    assert lira.advantage > 0.1


def test_figures_from_known_scores():
    labels = np.array([1] * 50 + [0] * 50)
    perfect = evaluate_attack("x", labels.astype(float), labels)
    assert perfect.auc == 1.0 and perfect.tpr_at["0.001"] == 1.0 and perfect.advantage == 1.0
    rng = np.random.default_rng(0)
    chance = evaluate_attack("x", rng.random(100_00), rng.integers(0, 2, 100_00))
    assert abs(chance.auc - 0.5) < 0.03 and chance.tpr_at["0.01"] < 0.05
    assert tpr_at_fpr(np.array([0, 0.5, 1]), np.array([0.2, 0.7, 1]), 0.1) == 0.2


def test_logit_confidence_matches_definition():
    net = models.build("mlp", (1, 8, 8), 10)
    ds = data.load("digits", "test").subset(range(20))
    x, y = ds.batch(torch.arange(20))
    p = torch.softmax(net(x).double(), 1).gather(1, y[:, None]).squeeze(1)
    assert np.allclose(logit_confidence(net, ds), torch.log(p / (1 - p)).detach().numpy())


def test_dp_bound_and_ledger_entry(overfit):
    target, members, nonmembers = overfit
    result = membership(target, members, nonmembers, "threshold")
    assert dp_bound_holds(result, epsilon=50.0, delta=1e-5)
    weak = audit_guarantee(result, epsilon=0.01, delta=1e-5)
    assert weak.status in ("supported", "violated") and weak.tests == "training-data"
    ledger = Ledger.start("a")
    ledger.add(audit_guarantee(result))
    html = render_html(ledger)
    assert "Membership inference ROC" in html


def test_bad_requests(overfit):
    target, members, nonmembers = overfit
    with pytest.raises(ConfigError, match="unknown attack"):
        membership(target, members, nonmembers, "shadow-magic")
    with pytest.raises(ConfigError, match="train_fn"):
        membership(target, members, nonmembers, "lira")


def test_augmentation_queries(overfit):
    target, members, nonmembers = overfit
    result = membership(
        target, members, nonmembers, "lira", train_fn=_train, n_reference=4, quiet=True, augment=2
    )
    assert result.details["augment"] == 2 and 0.0 <= result.auc <= 1.0
    from veil.audit.membership import shifted_queries

    queries = shifted_queries(members, 2)
    assert len(queries) == 3 and torch.equal(queries[1].data, torch.roll(members.data, 1, 2))


def test_parallel_reference_models(overfit):
    from veil.audit.membership import _concat, reference_logits

    _, members, nonmembers = overfit
    candidates = _concat(members, nonmembers)
    threads = torch.get_num_threads()
    one = reference_logits(candidates, _train, 2, seed=5, quiet=True)
    two = reference_logits(candidates, _train, 2, seed=5, quiet=True, workers=2)
    assert torch.get_num_threads() == threads  # restored
    assert (one[0] == two[0]).all() and two[1].shape == one[1].shape == (2, 1, 600, 10)
    assert np.isfinite(two[1]).all()
