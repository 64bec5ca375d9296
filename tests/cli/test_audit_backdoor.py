"""``veil audit backdoor attack``: a backdoored model file and its measured attack."""

from veil.cli.main import main
from veil.core.guarantees import Ledger


def test_backdoor_attack_writes_model_and_measurements(tmp_path, capsys):
    out = tmp_path / "bd.veil"
    args = ["-q", "audit", "backdoor", "attack", "-d", "digits", "-m", "mlp"]
    opts = ["--method", "badnets", "--size", "2", "--epochs", "8", "--lr", "0.1"]
    assert main([*args, *opts, "--optimizer", "sgd", "-o", str(out)]) == 0
    (record,) = Ledger.load(tmp_path / "bd.ledger.json").records
    assert record.kind == "backdoor-attack" and record.metrics["attack_success"] >= 0.9
    assert out.is_file()
    scan_args = ["-q", "audit", "backdoor", "scan", str(out), "--steps", "150", "--bound", "0.1"]
    assert main(scan_args) == 0
    scan, found = Ledger.load(tmp_path / "bd.backdoor.json").entries
    assert scan.mechanism == "Neural Cleanse" and scan.tests == "model"
    assert found.mechanism.startswith("ABS") and found.status == "violated"
    assert "[0]" in found.claim and found.numbers["max_reasr"] >= 0.9 and found.evidence["images"]
    assert 0 in [i for i, a in enumerate(scan.evidence["anomaly_index"]) if a > 2]
    assert len(scan.evidence["triggers"]["0"]) == 8  # the reversed 8x8 trigger of label 0
    report = tmp_path / "scan.html"
    assert main(["report", str(tmp_path / "bd.backdoor.json"), "-o", str(report)]) == 0
    assert "Backdoor scan" in report.read_text() and "ABS (artificial brain" in report.read_text()
    assert main(["-q", "audit", "backdoor", "scan", str(out), "--defenses", "strip"]) != 0
    assert main([*args, "--method", "ban", "--targets", "0,1", "-o", str(tmp_path / "x.veil")]) == 2
    assert "one target" in capsys.readouterr().err
    assert main([*args, "--targets", "zero", "-o", str(tmp_path / "y.veil")]) == 2


def test_strip_command_flags_triggered_inputs(tmp_path, capsys):
    import json

    import numpy as np
    import torch

    from veil.audit import backdoor
    from veil.core.data import load
    from veil.core.io import load_model

    out = tmp_path / "bd.veil"
    args = ["-q", "audit", "backdoor", "attack", "-d", "digits", "-m", "mlp", "--size", "2"]
    assert (
        main(
            [
                *args,
                "--method",
                "badnets",
                "--epochs",
                "8",
                "--lr",
                "0.1",
                "--optimizer",
                "sgd",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    test = load("digits", "test")
    x = test.batch(torch.arange(100))[0][test.targets[:100] != 0]
    triggers = backdoor.TriggerSet("badnets", test.input_shape, [0], 2, 10)
    stamped = triggers.apply(x, torch.zeros(len(x), dtype=torch.long), torch.Generator())
    np.savez(tmp_path / "in.npz", x=stamped.numpy())
    assert load_model(out).model is not None
    assert (
        main(
            [
                "audit",
                "backdoor",
                "strip",
                str(out),
                "--inputs",
                str(tmp_path / "in.npz"),
                "--frr",
                "0.05",
            ]
        )
        == 0
    )
    result = json.loads((tmp_path / "in.strip.json").read_text())
    assert len(result["flagged"]) == len(x) and sum(result["flagged"]) > 0.15 * len(x)
    from veil.core.guarantees import Ledger
    from veil.report import render_html

    ledger = Ledger.load(tmp_path / "in.strip.ledger.json")
    (entry,) = ledger.entries
    assert entry.mechanism == "STRIP" and entry.tests == "model"
    assert entry.numbers["flagged"] == sum(result["flagged"])
    hist = entry.evidence["entropy_histogram"]
    assert sum(hist["tested"]) == len(x) and sum(hist["clean"]) == min(500, len(test))
    assert hist["edges"][0] <= hist["threshold"] <= hist["edges"][-1]
    assert "STRIP entropies" in render_html(ledger)
    scan = ["audit", "backdoor", "scan", str(out), "--defenses", "strip,nc", "--steps", "20"]
    ledger_path = tmp_path / "scan.json"
    args = [*scan, "--inputs", str(tmp_path / "in.npz"), "--frr", "0.05", "--ledger"]
    assert main([*args, str(ledger_path)]) == 0
    strip_entry, nc_entry = Ledger.load(ledger_path).entries
    assert strip_entry.mechanism == "STRIP" and nc_entry.mechanism == "Neural Cleanse"
    assert strip_entry.numbers["flagged"] == entry.numbers["flagged"]  # same check, same seeds
    assert main(scan) == 2 and "pass --inputs" in capsys.readouterr().err
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert (
        main(["audit", "backdoor", "strip", str(out), "--inputs", str(tmp_path / "bad.npz")]) == 2
    )
    assert "not a readable .npz" in capsys.readouterr().err
