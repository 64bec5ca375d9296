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
