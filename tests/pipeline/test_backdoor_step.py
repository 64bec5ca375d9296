"""The ``backdoor-attack`` and ``audit-backdoor`` steps on the bundled digits."""

from veil import pipeline

SCENARIO = """\
[scenario]
name = "bd"

[[steps]]
id = "bad"
kind = "backdoor-attack"
data = "digits"
model = "mlp"
method = "badnets"
targets = [3]
size = 3
epochs = 30
lr = 0.003

[[steps]]
id = "scan"
kind = "audit-backdoor"
uses = "bad"
defenses = ["nc", "abs"]
steps = 200
"""


def test_a_backdoored_model_is_recorded_and_its_target_flagged(tmp_path):
    ledger = pipeline.run(pipeline.parse(SCENARIO), tmp_path / "out")
    (attack,) = ledger.records
    assert attack.kind == "backdoor-attack" and attack.metrics["attack_success"] > 0.95
    assert attack.details["config"]["targets"] == [3] and attack.details["config"]["size"] == 3
    nc, abs_entry = ledger.entries
    assert nc.mechanism == "Neural Cleanse" and nc.tests == "model"
    assert nc.status == "violated" and "[3]" in nc.claim
    assert abs_entry.mechanism.startswith("ABS") and abs_entry.step == "scan"
    assert (tmp_path / "out/models/bad.veil").is_file()
