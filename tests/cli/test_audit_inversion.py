"""``veil audit inversion`` and ``veil audit model-inversion``: reconstruction attacks from
the command line, each writing its audit (with images) to a ledger."""

from __future__ import annotations

import pytest
from PIL import Image

from veil.cli.main import main
from veil.core.guarantees import Ledger


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("inv") / "m.veil"
    args = ["-q", "train", "-d", "digits", "-m", "mlp", "-O", "hidden=[32]", "-O",
            "activation=tanh", "--epochs", "1", "-o", str(path)]  # fmt: skip
    assert main(args) == 0
    return path


def test_inversion_cli_writes_its_audit(model, tmp_path, capsys):
    inv = ["audit", "inversion", "--model", str(model), "--images", "2", "--steps", "150"]
    assert main(inv) == 0
    assert "images recovered above 20 dB" in capsys.readouterr().out
    (entry,) = Ledger.load(model.with_suffix(".inversion.json")).entries
    assert entry.tests == "training-data" and entry.numbers["images"] == 2
    assert entry.numbers["label_recovery_accuracy"] == 1.0 and len(entry.evidence["images"]) == 2
    dp = [*inv, "--setting", "dp", "--epsilon", "1", "--ledger", str(tmp_path / "dp.json")]
    assert main(dp) == 0
    (noisy,) = Ledger.load(tmp_path / "dp.json").entries
    assert noisy.numbers["mean_psnr"] < entry.numbers["mean_psnr"]


def test_inversion_of_an_untrained_network_in_batches(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["audit", "inversion", "--data", "digits", "--setting", "fedavg", "--local-steps",
            "3", "--batch", "2", "--images", "4", "--steps", "100"]  # fmt: skip
    assert main(args) == 0
    assert "fedavg, batch 2" in capsys.readouterr().out
    (entry,) = Ledger.load(tmp_path / "mlp.inversion.json").entries
    assert entry.parameters == {"setting": "fedavg", "local_steps": 3, "lr": 0.1}
    assert main(["audit", "inversion", "--model", "nonesuch", "--data", "digits"]) != 0


def test_model_inversion_cli(model, tmp_path, capsys):
    png, ledger = tmp_path / "classes.png", tmp_path / "mi.json"
    args = ["audit", "model-inversion", str(model), "--class", "3,5", "--steps", "100", "-o",
            str(png), "--ledger", str(ledger)]  # fmt: skip
    assert main(args) == 0
    assert "class representatives recovered" in capsys.readouterr().out
    (entry,) = Ledger.load(ledger).entries
    assert entry.numbers["classes"] == 2 and entry.parameters["access"] == "white box"
    assert Image.open(png).size == (16, 8)
    assert main(args) != 0  # outputs exist: refused without --force
    black = [*args[:5], "--black-box", "--queries", "400", "--ledger", str(tmp_path / "b.json")]
    assert main(black) == 0
    (entry,) = Ledger.load(tmp_path / "b.json").entries
    assert entry.parameters["queries"] == 400 and "400 queries per class" in entry.claim
    assert main([*args[:3], "--class", "x", "--ledger", str(tmp_path / "c.json")]) != 0
