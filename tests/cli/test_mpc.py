"""``veil mpc infer``: private inference from the command line, with its ledger."""

from __future__ import annotations

import torch

from veil.cli.main import main
from veil.core.guarantees import Ledger


def _trained(tmp_path, epochs: int = 5):
    """A small MLP trained on digits in the clear, as a model owner brings it."""
    model = tmp_path / "m.veil"
    args = ["-q", "train", "-d", "digits", "-m", "mlp", "-O", "hidden=[16]", "--epochs"]
    assert main([*args, str(epochs), "-o", str(model)]) == 0
    return model


def test_mpc_infer_writes_guarantees(tmp_path, capsys):
    model = _trained(tmp_path, epochs=5)
    ledger = tmp_path / "l.json"
    infer = ["mpc", "infer", str(model), "--limit", "50", "--engine", "threads"]
    assert main([*infer, "--ledger", str(ledger)]) == 0
    assert "argmax agreement 1.0000" in capsys.readouterr().out
    entries = {g.guarantee: g for g in Ledger.load(ledger).entries}
    assert set(entries) == {"input", "output"}
    assert entries["input"].numbers["argmax_agreement"] == 1.0
    numbers = entries["input"].numbers
    assert numbers["rounds"] >= 4 and numbers["bytes_sent_per_image_all_parties"] > 0


def test_mpc_party_needs_its_inputs(capsys):
    assert main(["mpc", "party", "--rank", "0", "--master", "127.0.0.1:1"]) == 2
    assert "--model" in capsys.readouterr().err


def test_mpc_infer_labels_only_over_processes(tmp_path, capsys):
    model = _trained(tmp_path, epochs=5)
    ledger = tmp_path / "l.json"
    infer = ["mpc", "infer", str(model), "--limit", "30", "--labels-only", "--ledger", str(ledger)]
    assert main(infer) == 0
    assert "argmax agreement 1.0000" in capsys.readouterr().out
    output = next(g for g in Ledger.load(ledger).entries if g.guarantee == "output")
    assert "only the labels" in output.claim and "max_abs_error" not in output.numbers


def test_mpc_train_threads_and_processes_agree(tmp_path, capsys):
    from veil.core.io import load_model

    base = ["mpc", "train", "-d", "digits", "-O", "hidden=[16]", "--steps", "12", "--batch",
            "16", "--limit", "200"]  # fmt: skip
    assert main([*base, "-o", str(tmp_path / "t.veil")]) == 0
    assert (
        "trained on shares (2 parties, threads, 200 records, 12 steps)" in capsys.readouterr().out
    )
    (entry,) = Ledger.load(tmp_path / "t.ledger.json").entries
    assert entry.guarantee == "input" and entry.parameters["steps"] == 12
    assert abs(entry.numbers["accuracy_drop_pt"]) < 1.0 and entry.numbers["rounds_per_step"] > 10
    assert main([*base, "--engine", "processes", "-o", str(tmp_path / "p.veil")]) == 0
    threads, procs = load_model(tmp_path / "t.veil").model, load_model(tmp_path / "p.veil").model
    flat = [torch.cat([p.detach().flatten() for p in m.parameters()]) for m in (threads, procs)]
    gap = (flat[0] - flat[1]).abs()  # see close_to_plaintext in tests/encrypted/mpc/test_train.py
    assert gap.mean() < 2e-3 and (gap < 1e-2).float().mean() > 0.98
    assert main([*base[:4], "-m", "he-mlp", "-o", str(tmp_path / "c.veil")]) != 0
    assert "MLP" in capsys.readouterr().err


def test_mpc_infer_shares_classifies_without_rebuilding(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from veil.core.data import sample_arrays
    from veil.core.io import load_model

    model = _trained(tmp_path, epochs=5)
    x, _ = sample_arrays("digits", "test", 1, 3)
    pixels = (x[0, 0] * 255).round().astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "img.png")
    assert main(["image", "share", str(tmp_path / "img.png"), "--k", "2", "--n", "3", "-o",
                 str(tmp_path / "s")]) == 0  # fmt: skip
    capsys.readouterr()
    shares = [str(tmp_path / "s" / f"share-{i}.vshare") for i in (3, 1)]
    ledger = tmp_path / "l.json"
    assert main(["mpc", "infer-shares", str(model), *shares, "--ledger", str(ledger)]) == 0
    out = capsys.readouterr().out
    with torch.no_grad():
        plain = load_model(model).model(torch.tensor(pixels / 255.0, dtype=torch.float32)[None])
    assert out.startswith(f"label {int(plain.argmax())}") and "never rebuilt" in out
    assert {g.guarantee for g in Ledger.load(ledger).entries} == {"input", "output"}
    assert main(["mpc", "infer-shares", str(model), shares[0]]) != 0  # 1 of k = 2


def test_three_parties_over_processes(tmp_path, capsys):
    model = _trained(tmp_path, epochs=5)
    ledger = tmp_path / "l.json"
    infer = ["mpc", "infer", str(model), "--limit", "40", "--parties", "3", "--ledger", str(ledger)]
    assert main(infer) == 0
    assert "(3 parties, processes)" in capsys.readouterr().out
    entry = next(g for g in Ledger.load(ledger).entries if g.guarantee == "input")
    assert entry.parameters["parties"] == 3 and entry.numbers["argmax_agreement"] == 1.0
    train = ["mpc", "train", "-d", "digits", "-O", "hidden=[16]", "--steps", "4", "--batch", "8",
             "--limit", "60", "--parties", "3", "--engine", "processes", "-o",
             str(tmp_path / "t.veil")]  # fmt: skip
    assert main(train) == 0
    (trained,) = Ledger.load(tmp_path / "t.ledger.json").entries
    assert trained.parameters["parties"] == 3 and abs(trained.numbers["accuracy_drop_pt"]) < 1


def test_a_model_kept_shared_from_training_to_inference(tmp_path, capsys):
    import subprocess
    import sys

    from veil.core.net import free_port

    base = ["mpc", "train", "-d", "digits", "-O", "hidden=[16]", "--steps", "100", "--batch",
            "16", "--limit", "300", "--keep-shared"]  # fmt: skip
    assert main([*base, "-o", str(tmp_path / "m.veil")]) == 0
    assert "model kept shared" in capsys.readouterr().out
    assert not (tmp_path / "m.veil").exists()  # nobody holds the model
    (entry,) = Ledger.load(tmp_path / "m.ledger.json").entries
    assert "nobody receives the trained weights" in entry.claim
    files = [str(tmp_path / f"m.party{r}.vshares") for r in (0, 1)]
    ledger = tmp_path / "infer.json"
    assert main(["mpc", "infer-shared", *files, "--limit", "40", "--ledger", str(ledger)]) == 0
    accuracy = float(capsys.readouterr().out.split("accuracy ")[1].split()[0])
    assert accuracy > 0.5 and {g.guarantee for g in Ledger.load(ledger).entries} == {
        "input",
        "output",
    }
    assert main(["mpc", "infer-shared", *files[::-1], "--limit", "5"]) != 0
    assert "party 0's file first" in capsys.readouterr().err
    # across processes: every rank of train-party writes its own shares
    master = f"127.0.0.1:{free_port()}"
    veil = [sys.executable, "-m", "veil.cli.main", "-q", "mpc", "train-party", "--master",
            master, "-d", "digits", "--limit", "100", "--steps", "5", "--batch", "8",
            "--keep-shared"]  # fmt: skip
    initial = tmp_path / "init.veil"
    assert main(["-q", "train", "-d", "digits", "-m", "mlp", "-O", "hidden=[8]", "--epochs",
                 "1", "-o", str(initial)]) == 0  # fmt: skip
    outs = [tmp_path / f"p{r}.vshares" for r in (0, 1)]
    ranks = [
        [*veil, "--rank", "0", "--model", str(initial), "--out", str(outs[0])],
        [*veil, "--rank", "1", "--out", str(outs[1])],
        [*veil, "--rank", "2"],
    ]
    procs = [subprocess.Popen(r) for r in ranks]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    assert main(["mpc", "infer-shared", *map(str, outs), "--limit", "10", "--engine",
                 "threads", "-d", "digits"]) == 0  # fmt: skip
    assert "10 digits images classified by a model kept in shares" in capsys.readouterr().out


def test_client_generated_triples_say_what_they_give_up(tmp_path, capsys):
    model = _trained(tmp_path, epochs=3)
    ledger = tmp_path / "l.json"
    infer = ["mpc", "infer", str(model), "--limit", "20", "--dealer", "client"]
    assert main([*infer, "--ledger", str(ledger)]) == 0  # rank 1 starts the dealer itself
    assert "argmax agreement 1.0000" in capsys.readouterr().out
    entries = Ledger.load(ledger).entries
    assert {g.parameters["dealer"] for g in entries} == {
        "the input owner (client-generated triples)"
    }
    assert all("NOT hidden from the input owner" in g.threat_model for g in entries)
    party = ["mpc", "party", "--rank", "0", "--master", "127.0.0.1:1", "--serve-dealer"]
    assert main([*party, "--model", str(model)]) == 2
    assert "for rank 1" in capsys.readouterr().err
