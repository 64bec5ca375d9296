"""Watermarks: keyed triggers are learned, verified with a p-value, absent from other models."""

import os

import torch

from veil.cli.main import main
from veil.core import data, models
from veil.core.guarantees import Ledger
from veil.core.train import fit
from veil.protect.watermark import trigger_set, verify, with_triggers


def test_triggers_depend_on_the_key_only():
    a = trigger_set(b"k" * 32, (1, 8, 8), 10, 20)
    assert torch.equal(a.data, trigger_set(b"k" * 32, (1, 8, 8), 10, 20).data)
    assert not torch.equal(a.data, trigger_set(b"j" * 32, (1, 8, 8), 10, 20).data)
    assert a.data.min() >= 0 and a.data.max() <= 1 and a.targets.max() < 10


def test_watermarked_model_is_recognised_and_others_are_not():
    train = data.load("digits", "train")
    key = os.urandom(32)
    torch.manual_seed(0)
    marked = models.build("mlp", train.input_shape, 10)
    fit(
        marked, with_triggers(train, trigger_set(key, train.input_shape, 10)), epochs=25, quiet=True
    )
    v = verify(marked, key, train.input_shape, 10)
    assert v.owned and v.hits >= 80
    clean = models.build("mlp", train.input_shape, 10)
    fit(clean, train, epochs=5, quiet=True)
    other = verify(clean, key, train.input_shape, 10)
    assert not other.owned and other.p_value > 1e-3
    assert not verify(marked, os.urandom(32), train.input_shape, 10).owned  # wrong key


def test_cli_watermark_round_trip(tmp_path, capsys):
    key = tmp_path / "wm"
    assert main(["model", "keygen", str(key), "--kind", "secret"]) == 0
    out = tmp_path / "m.veil"
    assert (
        main(
            [
                "-q",
                "model",
                "watermark",
                "--data",
                "digits",
                "--model",
                "mlp",
                "--key",
                str(key) + ".key",
                "--epochs",
                "25",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    entry = Ledger.load(tmp_path / "m.ledger.json").entries[0]
    assert entry.guarantee == "model" and entry.numbers["p_value"] < 1e-6
    capsys.readouterr()
    assert main(["model", "verify-watermark", str(out), "--key", str(key) + ".key"]) == 0
    assert "carries the watermark" in capsys.readouterr().out
