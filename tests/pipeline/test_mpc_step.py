"""The ``serve-mpc`` step: inference on shares agrees with the plaintext model."""

import pytest

from veil import pipeline

SCENARIO = """\
[scenario]
name = "mpc"

[[steps]]
id = "fit"
kind = "train"
data = "digits"
epochs = 3

[[steps]]
id = "private"
kind = "serve-mpc"
uses = "fit"
limit = 40
engine = "{engine}"
"""


@pytest.mark.parametrize("engine", ["threads", "processes"])
def test_serve_mpc_agrees_with_the_plaintext_model(tmp_path, engine):
    ledger = pipeline.run(pipeline.parse(SCENARIO.format(engine=engine)), tmp_path / "out")
    inputs, outputs = ledger.entries
    assert (inputs.guarantee, outputs.guarantee) == ("input", "output")
    numbers = inputs.numbers
    assert numbers["images"] == 40 and numbers["argmax_agreement"] == 1.0
    assert numbers["accuracy_mpc"] == numbers["accuracy_plain"]
    assert numbers["max_abs_error"] < 0.01 and numbers["rounds"] > 0
    assert inputs.parameters["compare_bits"] == 32  # digits lie in [0, 1]: auto takes 32
