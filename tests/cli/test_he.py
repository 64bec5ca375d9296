"""``veil he``: fit an HE-friendly model, check it, serve it, classify over HTTP encrypted."""

from __future__ import annotations

import os
import re

import pytest

from veil.cli.main import main
from veil.core.guarantees import Ledger
from veil.encrypted.he.service import Running


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("he") / "m.veil"
    args = ["-q", "he", "fit", "-d", "digits", "-m", "he-mlp", "-O", "hidden=16", "--epochs", "20"]
    assert main([*args, "-o", str(out)]) == 0
    return out


def test_check_agrees_with_plaintext(model_file, tmp_path, capsys):
    ledger = tmp_path / "l.json"
    assert main(["he", "check", str(model_file), "--limit", "8", "--ledger", str(ledger)]) == 0
    assert "argmax agreement 1.0000" in capsys.readouterr().out
    kinds = {g.guarantee: g for g in Ledger.load(ledger).entries}
    assert set(kinds) == {"input", "output"}
    assert kinds["input"].numbers["max_abs_error"] < 1e-3
    assert kinds["input"].parameters["security_bits"] == 128


def test_fit_refuses_relu_models_at_compile(tmp_path, capsys):
    args = [
        "he",
        "fit",
        "-d",
        "digits",
        "-m",
        "mlp",
        "--epochs",
        "1",
        "-o",
        str(tmp_path / "r.veil"),
    ]
    assert main(args) == 2
    assert "ReLU" in capsys.readouterr().err and not (tmp_path / "r.veil").exists()


def test_serve_and_infer_over_http(model_file, tmp_path, capsys):
    with Running(model_file, tmp_path) as service:
        assert oct(service.token_file.stat().st_mode & 0o777) == "0o600"
        ledger = tmp_path / "infer.json"
        args = [
            "he",
            "infer",
            "--server",
            service.url,
            "-d",
            "digits",
            "--limit",
            "20",
            "--token-file",
            str(service.token_file),
            "--ledger",
            str(ledger),
        ]
        assert main(args) == 0
        accuracy = float(re.search(r"accuracy (\S+),", capsys.readouterr().out).group(1))
        assert accuracy > 0.7
        assert {g.guarantee for g in Ledger.load(ledger).entries} == {"input", "output"}
        wrong = tmp_path / "wrong"
        wrong.write_text("x" * 43)
        assert main([*args[:-4], "--token-file", str(wrong)]) == 2
        assert "401" in capsys.readouterr().err
        pid = service.process.pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped by PID


def test_fit_from_a_relu_model_swaps_in_squares(tmp_path, capsys):
    relu = tmp_path / "relu.veil"
    args = ["-q", "train", "-d", "digits", "-m", "mlp", "-O", "hidden=[16]", "--epochs", "20"]
    assert main([*args, "-o", str(relu)]) == 0
    out = tmp_path / "sq.veil"
    assert main(["-q", "he", "fit", "--from", str(relu), "--epochs", "20", "-o", str(out)]) == 0
    message = capsys.readouterr().err
    assert "compiles to depth 3" in message
    assert float(re.search(r"test accuracy (\S+);", message).group(1)) > 0.8
