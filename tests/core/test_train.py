"""Training loops: learning happens, seeds reproduce, batches cover each example once."""

import pytest
import torch

from veil.core import data, models
from veil.core.errors import ConfigError
from veil.core.train import batches, evaluate, fit, per_class_accuracy, train_named


def test_fit_learns_digits_and_records_history():
    trained = train_named("digits", "mlp", epochs=4, batch_size=32, lr=0.05, seed=1)
    assert trained.result.final["accuracy"] > 0.9
    assert len(trained.result.history) == 4
    curves = trained.result.curves()
    assert curves["train_loss"][-1] < curves["train_loss"][0]
    rec = trained.record("s")
    assert rec.metrics["test_accuracy"] == trained.result.final["accuracy"]
    assert rec.details["n_train"] == 1347


def test_same_seed_same_weights_other_seed_differs():
    a = train_named("breast_cancer", "mlp", epochs=1, seed=3, limit=100)
    b = train_named("breast_cancer", "mlp", epochs=1, seed=3, limit=100)
    c = train_named("breast_cancer", "mlp", epochs=1, seed=4, limit=100)
    sa, sb, sc = (m.model.state_dict() for m in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_batches_cover_each_example_once():
    ds = data.load("digits", "test")
    ds.targets = torch.arange(len(ds))  # label = index, to see which examples come out
    seen = torch.cat(
        [y for _, y in batches(ds, 64, shuffle=True, generator=torch.Generator().manual_seed(0))]
    )
    assert sorted(seen.tolist()) == list(range(len(ds)))
    assert seen.tolist() != list(range(len(ds)))  # shuffled


def test_evaluate_and_per_class_accuracy_agree():
    ds = data.load("digits", "test")
    net = models.build("mlp", ds.input_shape, 10)
    fit(net, data.load("digits", "train"), epochs=2, quiet=True)
    overall = evaluate(net, ds)["accuracy"]
    per = per_class_accuracy(net, ds)
    counts = ds.class_counts()
    assert abs(sum(p * n for p, n in zip(per, counts, strict=True)) / len(ds) - overall) < 1e-3


@pytest.mark.parametrize(
    "kw", [{"epochs": 0}, {"lr": -1.0}, {"optimizer": "lbfgs"}, {"batch_size": 0}]
)
def test_bad_parameters(kw):
    ds = data.load("digits", "test")
    net = models.build("mlp", ds.input_shape, 10)
    with pytest.raises(ConfigError):
        fit(net, ds, **kw)


def test_limit_takes_a_random_subset_not_a_prefix(shared_data):
    # mnist.npz is sorted by class: a prefix would hold one class only
    trained = train_named("mnist", "mlp", limit=500, epochs=1, seed=0)
    assert len(trained.train) == 500 and min(trained.train.class_counts()) > 20
