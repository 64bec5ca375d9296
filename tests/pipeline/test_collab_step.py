"""The ``collab-train`` step: a DSSGD model, its guarantee and its rounds in the report."""

import pytest

from veil import pipeline
from veil.core.errors import VeilError

SCENARIO = """\
[scenario]
name = "together"

[[steps]]
id = "joint"
kind = "collab-train"
data = "digits"
participants = 3
epochs = 3
theta_up = 0.2
drop_rate = 0.2

[[steps]]
id = "check"
kind = "evaluate"
uses = "joint"
"""


def test_collab_step_trains_and_reports(tmp_path):
    ledger = pipeline.run(pipeline.parse(SCENARIO), tmp_path / "out")
    (entry,) = ledger.entries
    assert entry.mechanism == "DSSGD" and entry.step == "joint"
    assert entry.parameters["theta_up"] == 0.2 and entry.parameters["drop_rate"] == 0.2
    collab_rec, eval_rec = ledger.records
    assert eval_rec.metrics["accuracy"] == collab_rec.metrics["test_accuracy"]
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Collaborative training: joint" in html


def test_collab_step_refuses_fractional_rounds(tmp_path):
    text = SCENARIO.replace("epochs = 3", "epochs = 2.5")
    with pytest.raises(VeilError, match="must be whole"):
        pipeline.run(pipeline.parse(text), tmp_path / "out")
