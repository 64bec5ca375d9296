"""Running scenarios: outputs written, another run's folder refused, failures keep the ledger."""

import json

import pytest

from veil import pipeline
from veil.core.errors import DataError, VeilError
from veil.core.guarantees import Ledger

TINY = """\
[scenario]
name = "tiny"
seed = 2

[[steps]]
id = "fit"
kind = "train"
data = "digits"
epochs = 2
limit = 400

[[steps]]
id = "check"
kind = "evaluate"
uses = "fit"
"""


def test_run_writes_ledger_report_and_model(tmp_path):
    ledger = pipeline.run(pipeline.parse(TINY), tmp_path / "out")
    out = tmp_path / "out"
    assert (out / "ledger.json").is_file() and (out / "report.html").is_file()
    assert (out / "models" / "fit.veil").is_file()
    saved = Ledger.load(out / "ledger.json")
    assert saved == ledger and saved.run["status"] == "ok" and saved.run["seed"] == 2
    kinds = [r.kind for r in saved.records]
    assert kinds == ["train", "evaluate"]
    ev = saved.records[1]
    assert ev.metrics["accuracy"] == saved.records[0].metrics["test_accuracy"]
    assert len(ev.details["per_class_accuracy"]) == 10
    import hashlib

    digest = hashlib.sha256(TINY.encode()).hexdigest()
    assert saved.run["scenario_sha256"] == digest and "torch" in saved.run["versions"]
    footer = (out / "report.html").read_text().split('<footer id="reproduce">')[1]
    assert digest in footer and f"torch {saved.run['versions']['torch']}" in footer
    assert "seed 2" in footer


def test_run_refuses_to_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "ledger.json").write_text("precious")
    with pytest.raises(VeilError, match="--force"):
        pipeline.run(pipeline.parse(TINY), out)
    assert (out / "ledger.json").read_text() == "precious"


def test_failed_step_keeps_ledger(tmp_path, empty_root):
    text = TINY.replace('data = "digits"', 'data = "mnist"')
    with pytest.raises(DataError, match="step 'fit' \\(train\\) failed: MNIST not found"):
        pipeline.run(pipeline.parse(text), tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "ledger.json").read_text())
    assert saved["run"]["status"] == "failed" and saved["run"]["failed_step"] == "fit"


def test_dp_train_step_puts_guarantee_in_ledger_and_report(tmp_path):
    text = TINY.replace(
        'kind = "train"', 'kind = "dp-train"\nepsilon = 5.0\nnoise_seed = 1\nlr = 0.2'
    )
    text = text.replace("limit = 400", "limit = 400\nbatch_size = 100")
    ledger = pipeline.run(pipeline.parse(text), tmp_path / "out")
    (entry,) = ledger.entries
    assert entry.mechanism == "DP-SGD" and entry.step == "fit"
    assert entry.numbers["epsilon"] <= 5.0 and entry.parameters["n"] == 400
    assert ledger.status("training-data") == "claimed"
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Privacy/utility trade-off" in html and "epsilon curve" in html


def test_audit_step_checks_a_dp_model_against_its_claim(tmp_path):
    text = TINY.replace(
        'kind = "train"', 'kind = "dp-train"\nepsilon = 2.0\nnoise_seed = 1\nlr = 0.2'
    )
    text = text.replace("limit = 400", "limit = 400\nbatch_size = 100")
    text += '\n[[steps]]\nid = "audit"\nkind = "audit-membership"\nuses = "fit"\nshadows = 2\n'
    text += "limit = 100\nepochs = 2\n"
    ledger = pipeline.run(pipeline.parse(text), tmp_path / "out")
    audit = [e for e in ledger.entries if e.guarantee == "audit"][0]
    assert audit.tests == "training-data" and audit.numbers["epsilon"] <= 2.0
    assert audit.evidence["dp_bound"]["epsilon"] == audit.numbers["epsilon"]
    assert audit.status in ("supported", "violated")
    assert "Membership inference ROC" in (tmp_path / "out" / "report.html").read_text()


def test_audit_dp_step_reruns_the_recipe_with_canaries(tmp_path):
    # a fixed noise seed keeps the test deterministic: with fresh noise the audit is allowed
    # to refute the claim 5% of the time (its confidence level)
    text = TINY.replace(
        'kind = "train"', 'kind = "dp-train"\nepsilon = 2.0\nlr = 0.2\nnoise_seed = 4'
    )
    text = text.replace("limit = 400", "limit = 400\nbatch_size = 100")
    text += '\n[[steps]]\nid = "dp-audit"\nkind = "audit-dp"\nuses = "fit"\ncanaries = 100\n'
    ledger = pipeline.run(pipeline.parse(text), tmp_path / "out")
    (audit,) = [e for e in ledger.entries if e.mechanism.startswith("DP audit")]
    assert audit.numbers["epsilon"] <= 2.0
    assert audit.numbers["epsilon_lower_bound"] <= audit.numbers["epsilon"]
    assert audit.status == "supported" and "claimed ε" in audit.claim
