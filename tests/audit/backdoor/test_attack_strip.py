import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.audit import backdoor
from veil.core.train import prepare


def test_entropy_is_per_copy_over_classes_then_averaged():
    # every blended copy confidently says class 0: STRIP's score is 0. Taking the entropy
    # across copies instead (ART's mistake) would give log(4) here.
    probs = torch.tensor([[[1.0, 0.0]] * 4, [[0.5, 0.5]] * 4])
    scores = backdoor.mean_entropy(probs)
    assert scores[0].item() == pytest.approx(0.0, abs=1e-9)
    assert scores[1].item() == pytest.approx(math.log(2))


@pytest.fixture(scope="module")
def badnets_digits():
    p = prepare("digits", "mlp", seed=0)
    cfg = backdoor.AttackConfig(
        method="badnets", targets=(0,), size=2, epochs=30, batch_size=32, rate=0.1, lr=0.1
    )
    return p, backdoor.train_backdoored(p.model, p.train, p.test, cfg, quiet=True)


def test_badnets_succeeds_and_keeps_clean_accuracy(badnets_digits):
    _, result = badnets_digits
    assert result.attack_success >= 0.9
    assert result.clean_accuracy >= 0.85


def test_strip_flags_triggered_inputs_and_few_clean_ones(badnets_digits):
    p, result = badnets_digits
    x = p.test.batch(torch.arange(200))[0]
    keep = p.test.targets[:200] != 0
    gen = torch.Generator().manual_seed(5)
    triggered = result.triggers.apply(x[keep], torch.zeros(int(keep.sum()), dtype=torch.long), gen)
    clean = p.test.batch(torch.arange(200, 400))[0]
    found = backdoor.strip(result.model, triggered, clean, p.train, frr=0.05, copies=16)
    assert found.false_rejection <= 0.06
    # an 8x8 digit leaves a 2x2 trigger little room to survive the blend, so STRIP catches
    # fewer here than on MNIST (benchmarks/bench_backdoor.py), but far more than by chance
    assert found.detection_rate >= 3 * found.false_rejection


def test_anomaly_index_is_distance_below_median_in_mad_units():
    from veil.audit.backdoor.neural_cleanse import anomaly_indices

    norms = [1.0, 10.0, 11.0, 12.0, 9.0]  # median 10, MAD 1
    a = anomaly_indices(norms)
    assert a[0] == pytest.approx(9 / 1.4826)
    assert a[2] == 0.0 and a[3] == 0.0  # above the median: never anomalous
    assert anomaly_indices([5.0] * 4) == [0.0] * 4


def test_neural_cleanse_flags_the_target_and_not_a_clean_model(badnets_digits):
    from veil.audit.backdoor.neural_cleanse import CleanseConfig, neural_cleanse
    from veil.core.train import fit

    p, result = badnets_digits
    cfg = CleanseConfig(steps=200)
    found = neural_cleanse(result.model, p.train, cfg)
    assert found.flagged == [0]
    assert found.norms[0] == min(found.norms)
    clean = prepare("digits", "mlp", seed=0)
    fit(clean.model, clean.train, epochs=30, batch_size=32, lr=0.1, momentum=0.0, quiet=True)
    assert neural_cleanse(clean.model, clean.train, cfg).flagged == []


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=400))
def test_load_inputs_refuses_garbage_with_a_data_error(tmp_path_factory, blob):
    from veil.audit.backdoor.strip import load_inputs
    from veil.core.errors import DataError

    path = tmp_path_factory.mktemp("npz") / "in.npz"
    path.write_bytes(blob)
    with pytest.raises(DataError):
        load_inputs(path, (1, 8, 8))


def test_load_inputs_accepts_uint8_and_unit_floats_only(tmp_path):
    import numpy as np

    from veil.audit.backdoor.strip import load_inputs
    from veil.core.errors import DataError

    np.savez(tmp_path / "a.npz", x=np.full((3, 8, 8), 255, np.uint8))
    assert load_inputs(tmp_path / "a.npz", (1, 8, 8)).max() == 1.0
    np.savez(tmp_path / "b.npz", x=np.full((3, 1, 8, 8), 2.0))
    with pytest.raises(DataError, match="in \\[0, 1\\]"):
        load_inputs(tmp_path / "b.npz", (1, 8, 8))
    np.savez(tmp_path / "c.npz", x=np.zeros((3, 1, 7, 8)))
    with pytest.raises(DataError, match="shape"):
        load_inputs(tmp_path / "c.npz", (1, 8, 8))
