"""``veil mpc infer``: private inference from the command line, with its ledger."""

from __future__ import annotations

from veil.cli.main import main
from veil.core.guarantees import Ledger


def test_mpc_infer_writes_guarantees(tmp_path, capsys):
    model = tmp_path / "m.veil"
    args = ["-q", "train", "-d", "digits", "-m", "mlp", "-O", "hidden=[16]", "--epochs", "5"]
    assert main([*args, "-o", str(model)]) == 0
    ledger = tmp_path / "l.json"
    infer = ["mpc", "infer", str(model), "--limit", "50", "--engine", "threads"]
    assert main([*infer, "--ledger", str(ledger)]) == 0
    assert "argmax agreement 1.0000" in capsys.readouterr().out
    entries = {g.guarantee: g for g in Ledger.load(ledger).entries}
    assert set(entries) == {"input", "output"}
    assert entries["input"].numbers["argmax_agreement"] == 1.0


def test_mpc_party_needs_its_inputs(capsys):
    assert main(["mpc", "party", "--rank", "0", "--master", "127.0.0.1:1"]) == 2
    assert "--model" in capsys.readouterr().err


def test_mpc_infer_labels_only_over_processes(tmp_path, capsys):
    model = tmp_path / "m.veil"
    args = ["-q", "train", "-d", "digits", "-m", "mlp", "-O", "hidden=[16]", "--epochs", "5"]
    assert main([*args, "-o", str(model)]) == 0
    ledger = tmp_path / "l.json"
    infer = ["mpc", "infer", str(model), "--limit", "30", "--labels-only", "--ledger", str(ledger)]
    assert main(infer) == 0
    assert "argmax agreement 1.0000" in capsys.readouterr().out
    output = next(g for g in Ledger.load(ledger).entries if g.guarantee == "output")
    assert "only the labels" in output.claim and "max_abs_error" not in output.numbers
