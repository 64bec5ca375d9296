"""``veil audit gradient-inversion``: reconstruction from shared updates, with its ledger."""

from __future__ import annotations

from veil.cli.main import main
from veil.core.guarantees import Ledger


def test_gradient_inversion_cli_writes_its_audit(tmp_path, capsys):
    model = tmp_path / "m.veil"
    args = ["-q", "train", "-d", "digits", "-m", "mlp", "-O", "hidden=[32]", "-O",
            "activation=tanh", "--epochs", "1", "-o", str(model)]  # fmt: skip
    assert main(args) == 0
    inv = ["audit", "gradient-inversion", str(model), "--images", "2", "--steps", "150"]
    assert main(inv) == 0
    assert "images recovered above 20 dB" in capsys.readouterr().out
    (entry,) = Ledger.load(model.with_suffix(".inversion.json")).entries
    assert entry.tests == "training-data" and entry.numbers["images"] == 2
    assert entry.numbers["label_recovery_accuracy"] == 1.0
    dp = [*inv, "--setting", "dp", "--epsilon", "1", "--ledger", str(tmp_path / "dp.json")]
    assert main(dp) == 0
    (noisy,) = Ledger.load(tmp_path / "dp.json").entries
    assert noisy.numbers["mean_psnr"] < entry.numbers["mean_psnr"]
