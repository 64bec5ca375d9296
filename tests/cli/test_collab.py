"""``veil collab run``: writes the global model and a ledger; refuses bad settings in a line."""

from veil.cli.main import main
from veil.core.guarantees import Ledger
from veil.core.io import load_model

ARGS = ["-q", "collab", "run", "-d", "digits", "--participants", "3", "--rounds", "3"]


def test_collab_run_writes_model_ledger_and_baselines(tmp_path, capsys):
    out = tmp_path / "g.veil"
    assert main([*ARGS, "--baselines", "-o", str(out)]) == 0
    ledger = Ledger.load(tmp_path / "g.ledger.json")
    (entry,) = ledger.entries
    assert entry.mechanism == "DSSGD" and entry.parameters["theta_up"] == 0.1
    (record,) = ledger.records
    assert record.kind == "collab" and len(record.curves["participant_3_accuracy"]) == 3
    base = record.details["baselines"]
    assert 0 < base["standalone_accuracy"] < 1 and 0 < base["centralized_accuracy"] < 1
    assert load_model(out).model is not None
    assert "upload 11." in capsys.readouterr().err


def test_collab_run_with_dp_reports_whole_run_epsilon(tmp_path):
    args = [*ARGS, "--dp-epsilon", "4", "--gamma", "0.01", "--tau", "0.001"]
    assert main([*args, "-o", str(tmp_path / "p.veil")]) == 0
    (entry,) = Ledger.load(tmp_path / "p.ledger.json").entries
    assert entry.numbers["epsilon"] <= 4.0 and entry.parameters["upload"] == "svt"


def test_collab_run_refuses_bad_settings(tmp_path, capsys):
    assert main([*ARGS, "--dp-epsilon", "4", "-o", str(tmp_path / "x.veil")]) == 2
    assert "needs a bound gamma" in capsys.readouterr().err
    assert main([*ARGS, "--order", "sideways", "-o", str(tmp_path / "x.veil")]) == 2
    assert main([*ARGS, "--engine", "carrier-pigeon", "-o", str(tmp_path / "x.veil")]) == 2
    assert not (tmp_path / "x.veil").exists()
