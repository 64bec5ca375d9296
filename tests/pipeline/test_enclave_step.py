"""The ``enclave-train`` step: a real enclave service, confined training, label-only answers."""

import shutil

import pytest

from veil import pipeline

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap missing")

SCENARIO = """\
[scenario]
name = "mlaas"

[[steps]]
id = "confined"
kind = "enclave-train"
data = "breast_cancer"
sites = SITES
rounds = 8
epochs = 30
queries = 100
"""


@pytest.mark.parametrize("sites", [1, 3])
def test_enclave_step_trains_confined_and_answers_labels(tmp_path, sites):
    ledger = pipeline.run(pipeline.parse(SCENARIO.replace("SITES", str(sites))), tmp_path / "o")
    entries = {g.guarantee: g for g in ledger.entries}
    assert set(entries) == {"training-data", "model"}
    model = entries["model"]
    assert model.numbers["accuracy_label_only"] > 0.85 and model.numbers["sites"] == sites
    assert model.numbers["queries"] == 1 and model.parameters["rows_budget"] == 100
    assert "simulated" in entries["training-data"].threat_model
