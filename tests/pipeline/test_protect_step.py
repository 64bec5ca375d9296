"""The ``seal``, ``sign`` and ``watermark`` steps: files written, claims checked, keys kept."""

import stat

import pytest

from veil import pipeline
from veil.core.errors import ScenarioError
from veil.core.io import load_model_bytes
from veil.protect import SealError, SignatureError, unseal_file, verify
from veil.protect.keys import generate

SCENARIO = """\
[scenario]
name = "protect"

[[steps]]
id = "fit"
kind = "train"
data = "breast_cancer"
epochs = 2

[[steps]]
id = "sealed"
kind = "seal"
uses = "fit"
{seal_to}

[[steps]]
id = "release"
kind = "sign"
uses = ["fit", "sealed"]
"""


def _run(tmp_path, seal_to=""):
    text = SCENARIO.format(seal_to=seal_to)
    return pipeline.run(pipeline.parse(text), tmp_path / "out")


def test_seal_and_sign_with_keys_made_for_the_run(tmp_path):
    ledger = _run(tmp_path)
    out = tmp_path / "out"
    sealed, signed = ledger.entries
    assert sealed.guarantee == signed.guarantee == "model"
    assert sealed.evidence["opens_to_same_bytes"] and sealed.evidence["changed_byte_refused"]
    assert signed.evidence["verified"] and signed.evidence["changed_digest_refused"]
    model = (out / "models/fit.veil").read_bytes()
    blob = (out / "models/fit.veil.sealed").read_bytes()
    assert model not in blob and sealed.numbers["sealed_bytes"] == len(blob)
    assert unseal_file(out / "models/fit.veil.sealed", out / "keys/sealed.key") == model
    load_model_bytes(model, "fit")  # what was sealed is the model file
    assert stat.S_IMODE((out / "keys/sealed.key").stat().st_mode) == 0o600
    assert sorted(verify(out / "release.sig.json", out / "keys/release.pub")) == [
        "models/fit.veil",
        "models/fit.veil.sealed",
    ]
    (out / "models/fit.veil").write_bytes(model + b"\0")  # changed after signing
    with pytest.raises(SignatureError, match="modified"):
        verify(out / "release.sig.json", out / "keys/release.pub")


def test_seal_for_a_recipient_key_given_by_the_scenario(tmp_path):
    priv, pub = generate(tmp_path / "clinic", "x25519")
    ledger = _run(tmp_path, f'to = "{pub}"')
    sealed = ledger.entries[0]
    assert sealed.parameters["recipient"] in pub.read_text()
    assert "opens_to_same_bytes" not in sealed.evidence  # the run has no private key to try
    assert not (tmp_path / "out/keys/sealed.key").exists()
    assert unseal_file(tmp_path / "out/models/fit.veil.sealed", priv)
    other, _ = generate(tmp_path / "other", "x25519")
    with pytest.raises(SealError, match="another key"):
        unseal_file(tmp_path / "out/models/fit.veil.sealed", other)


def test_sign_refuses_a_step_that_produced_nothing():
    text = SCENARIO.format(seal_to="").replace('uses = ["fit", "sealed"]', 'uses = ["fit", "x"]')
    with pytest.raises(ScenarioError, match=r"release.uses\[1\] needs file 'x'"):
        pipeline.check_graph(pipeline.parse(text))


def test_watermark_step_trains_a_model_that_answers_its_key(tmp_path):
    text = """\
[scenario]
name = "wm"

[[steps]]
id = "owned"
kind = "watermark"
data = "digits"
epochs = 8
triggers = 50
"""
    ledger = pipeline.run(pipeline.parse(text), tmp_path / "out")
    (entry,) = ledger.entries
    assert entry.guarantee == "model" and entry.numbers["hits"] >= 45
    assert entry.numbers["p_value"] < 1e-30
    assert ledger.records[0].metrics["test_accuracy"] > 0.85
    assert (tmp_path / "out/keys/owned.key").is_file()
