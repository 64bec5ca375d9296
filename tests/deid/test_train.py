import numpy as np
import pytest
import torch

from veil.core.errors import ConfigError
from veil.deid.corpus import split_patients
from veil.deid.lexicon import Lexicon
from veil.deid.tagger import BIASES, Options, Tagger
from veil.deid.train import EpochCount, held_out_counts, train_tagger

from .conftest import synthetic_notes


def test_train_tagger_calibrates_on_held_out_patients():
    notes = synthetic_notes(40)
    lines = []
    tagger, report = train_tagger(
        notes, epochs=2, min_precision=0.8, echo=lines.append, opts=Options(hidden=16)
    )
    calibration = tagger.info["calibration"]
    assert calibration["min_precision"] == 0.8
    assert report["o_bias"] == tagger.o_bias == calibration["o_bias"]
    assert report["dev_token_precision"] >= 0.8
    assert tagger.info["train_notes"] + tagger.info["dev_notes"] == len(notes)
    assert lines[0].startswith("training on") and "epoch 2/2" in lines[-1]
    _, report = train_tagger(notes, epochs=1, target_recall=0.5, echo=lines.append,
                             opts=Options(hidden=16))  # fmt: skip
    assert report["dev_token_recall"] >= 0.5


def test_held_out_counts_score_every_note_once_by_a_tagger_that_did_not_see_it():
    notes = synthetic_notes(40)
    lines = []
    opts = Options(hidden=16, epochs=1)
    counts = held_out_counts(notes, Lexicon.empty(), opts, 3, echo=lines.append)
    assert counts.shape == (len(BIASES), len(notes), 3)
    # every bias sees the same gold PHI tokens: true positives plus misses
    phi = counts[:, :, 0].sum(1) + counts[:, :, 2].sum(1)
    assert (phi == phi[0]).all() and phi[0] > 0
    progress = [line for line in lines if line.startswith("cross-fitting")]
    assert len(lines) == 4 and progress[0].startswith("cross-fitting: 3/3 epochs of 3 taggers")
    assert sorted(line.split(":")[0] for line in lines if line.startswith("fold")) == [
        "fold 1/3", "fold 2/3", "fold 3/3"
    ]  # fmt: skip
    # the folds trained side by side are the taggers each trains alone on one thread
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = []
        for part in split_patients(notes, (1.0,) * 3, opts.seed):
            held = {n.patient for n in part}
            tagger = Tagger.train(
                [n for n in notes if n.patient not in held], Lexicon.empty(), opts
            )
            alone.append(np.stack([c for _, c in tagger.sweep_counts(part, sorted(BIASES))]))
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(counts, np.concatenate(alone, axis=1))
    with pytest.raises(ConfigError, match="at least 2"):
        held_out_counts(notes, Lexicon.empty(), opts, 1)
    with pytest.raises(ConfigError, match="patients"):
        held_out_counts(notes[:3], Lexicon.empty(), opts, 5)


def test_train_tagger_with_folds_calibrates_on_the_training_patients_too():
    notes = synthetic_notes(40)
    lines = []
    tagger, report = train_tagger(notes, epochs=1, min_precision=0.8, folds=2,
                                  echo=lines.append, opts=Options(hidden=16))  # fmt: skip
    calibration = tagger.info["calibration"]
    assert calibration["pooled_notes"] == tagger.info["train_notes"]
    assert any(line.startswith("fold 2/2") for line in lines)
    with pytest.raises(ConfigError, match="sites"):
        train_tagger(notes, folds=2, sites=2, opts=Options(hidden=16))


def test_train_tagger_on_every_patient_sets_the_bias_on_the_folds_alone():
    notes = synthetic_notes(40)
    lines = []
    tagger, _ = train_tagger(notes, epochs=1, min_precision=0.8, folds=2, dev_fraction=0,
                             echo=lines.append, opts=Options(hidden=16))  # fmt: skip
    assert tagger.info["train_notes"] == len(notes) and tagger.info["dev_notes"] == 0
    assert tagger.info["calibration"]["pooled_notes"] == len(notes)
    assert lines[1] == "epoch 1/1: loss " + lines[1].split("loss ")[1]
    assert "dev token F1" not in lines[1]
    with pytest.raises(ConfigError, match="nothing to set"):
        train_tagger(notes, dev_fraction=0, opts=Options(hidden=16))
    with pytest.raises(ConfigError, match="dev_fraction"):
        train_tagger(notes, dev_fraction=1.0, opts=Options(hidden=16))


def test_cross_fitting_progress_counts_epochs_however_the_folds_interleave():
    lines = []
    count = EpochCount(2, 3, lines.append)
    for loss in (1.0, 3.0, 2.0, 2.0, 5.0):
        count(1, loss, None)
    assert lines == ["cross-fitting: 2/6 epochs of 2 taggers, mean loss 2.000",
                     "cross-fitting: 4/6 epochs of 2 taggers, mean loss 2.000"]  # fmt: skip
    count(3, 1.0, None)
    assert lines[-1] == "cross-fitting: 6/6 epochs of 2 taggers, mean loss 3.000"
