import pytest

from veil.core.errors import ConfigError
from veil.deid.tagger import Options
from veil.deid.train import train_tagger

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


def test_refit_trains_on_every_patient_and_keeps_the_dev_bias():
    notes = synthetic_notes(40)
    lines = []
    tagger, report = train_tagger(notes, epochs=2, refit=True, echo=lines.append,
                                  opts=Options(hidden=16))  # fmt: skip
    assert tagger.info["train_notes"] == len(notes)
    assert report["refit_epochs"] == tagger.info["epochs"] <= 2
    assert report["o_bias"] == tagger.o_bias
    assert any(line.startswith("refit:") for line in lines)
    with pytest.raises(ConfigError, match="sites=1"):
        train_tagger(notes, sites=2, refit=True, echo=lines.append)
