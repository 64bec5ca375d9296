"""Secure training: SGD on shared records from two parties matches plaintext SGD; only party
0 gets the trained weights; what is not an MLP is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from veil.core import data, models
from veil.encrypted.mpc.comm import run_threads
from veil.encrypted.mpc.ring import MPCError
from veil.encrypted.mpc.train import (
    Schedule,
    mlp_layers,
    parts_of,
    plain_sgd,
    pooled,
    train_party,
    train_threads,
)


@pytest.fixture(scope="module")
def digits():
    train = data.load("digits", "train")
    x, y = train.batch(torch.randperm(len(train), generator=torch.Generator().manual_seed(0)))
    test = data.load("digits", "test")
    tx, ty = test.batch(torch.arange(len(test)))
    return x.numpy().reshape(len(x), -1), y.numpy(), tx, ty


def _net(seed: int = 0):
    torch.manual_seed(seed)
    return models.build("mlp", (1, 8, 8), 10, hidden=[32])


def close_to_plaintext(got: torch.nn.Module, want: torch.nn.Module) -> None:
    """Weights after a few steps: fixed-point units of 1.5e-5 and a softmax to ~0.5% keep
    the gaps near 1e-4; a ReLU whose input rounds across zero can flip one unit's gradient
    for one record, so a few percent of weights may differ by lr/batch-sized steps."""
    flat = [torch.cat([p.detach().flatten() for p in m.parameters()]) for m in (got, want)]
    gap = (flat[0] - flat[1]).abs()
    assert gap.mean() < 2e-3 and (gap < 1e-2).float().mean() > 0.98


def test_steps_on_shares_match_plaintext_sgd(digits):
    x, y, *_ = digits
    net, schedule = _net(), Schedule(steps=6, batch=16, lr=0.2, seed=3)
    out = train_threads(net, [(x[:100], y[:100]), (x[100:160], y[100:160])], 10, schedule)
    ref = plain_sgd(net, x[:160], y[:160], schedule)
    close_to_plaintext(out["model"], ref)
    assert out["records"] == 160
    owner, other = out["traffic"]
    assert owner["rounds"] == other["rounds"] and owner["bytes_sent"] > 0
    assert not torch.equal(next(out["model"].parameters()), next(net.parameters()))


def test_three_parties_train_like_plaintext(digits):
    x, y, *_ = digits
    net, schedule = _net(), Schedule(steps=6, batch=16, lr=0.2, seed=3)
    parts = parts_of(x[:150], y[:150], parties=3)
    out = train_threads(net, parts, 10, schedule)
    ref = plain_sgd(net, *pooled(parts), schedule)
    close_to_plaintext(out["model"], ref)
    assert out["records"] == 150 and len(out["traffic"]) == 3


def test_training_on_shares_learns_like_plaintext(digits):
    x, y, tx, ty = digits
    net, schedule = _net(1), Schedule(steps=120, batch=32, lr=0.2)
    out = train_threads(net, [(x[:500], y[:500]), (x[500:1000], y[500:1000])], 10, schedule)
    ref = plain_sgd(net, x[:1000], y[:1000], schedule)
    with torch.no_grad():
        secure, plain = out["model"](tx).argmax(1), ref(tx).argmax(1)
    assert float((secure == ty).float().mean()) > 0.85
    assert float((secure == plain).float().mean()) > 0.98


def test_only_mlps_and_sane_schedules():
    with pytest.raises(MPCError, match="MLP"):
        mlp_layers(models.build("lenet", (1, 28, 28), 10))
    with pytest.raises(MPCError, match="MLP"):
        mlp_layers(models.build("mlp", (1, 8, 8), 10, activation="tanh"))
    assert len(mlp_layers(_net())) == 2
    with pytest.raises(MPCError, match="batch"):
        Schedule(steps=1, batch=50).batches(10)
    order = Schedule(steps=5, batch=4, seed=1).batches(10)
    assert len(order) == 5 and all(len(b) == 4 for b in order)
    assert len(set(np.concatenate(order[:2]).tolist())) == 8  # no repeat within an epoch
    assert np.concatenate(order).max() < 10


def test_party_one_never_receives_the_weights(digits):
    x, y, *_ = digits
    net, schedule = _net(), Schedule(steps=1, batch=8)

    def program(comm):
        mine = (x[:20], y[:20]) if comm.rank < 2 else (None, None)
        model = net if comm.rank == 0 else None
        return train_party(comm, model, *mine, 10, schedule)

    owner, other, _ = run_threads(2, program)
    assert len(owner["weights"]) == 2 and "weights" not in other


def test_a_model_kept_shared_serves_inference_nobody_holds_whole(digits):
    from veil.encrypted.mpc.model import compile_shared, infer_threads
    from veil.encrypted.mpc.ring import decode
    from veil.encrypted.mpc.train import load_weights

    x, y, tx, _ = digits
    net, schedule = _net(), Schedule(steps=20, batch=16, lr=0.2)
    out = train_threads(net, parts_of(x[:200], y[:200]), 10, schedule, keep_shared=True)
    assert "model" not in out
    first, second = out["weight_shares"]
    # each party's shares alone are noise; only their sum is the model
    pairs = zip(first, second, strict=True)
    whole = [(decode(w0 + w1).T, decode(b0 + b1)) for (w0, b0), (w1, b1) in pairs]
    assert np.abs(decode(first[0][0])).mean() > 1e6
    trained = load_weights(_net(), whole)
    images = tx[:30].numpy().reshape(30, -1)
    sharing = out["sharing_id"]
    got = infer_threads(None, images, weight_shares=out["weight_shares"], sharing_ids=[sharing] * 2)
    plain = compile_shared(trained, (1, 8, 8)).forward(images)
    assert got["compare_bits"] == 64  # no plaintext weights to bound: the full width
    assert np.abs(got["logits"] - plain).max() < 1e-2
    with pytest.raises(MPCError, match="must too"):
        infer_threads(compile_shared(trained, (1, 8, 8)), images, weight_shares=[first, None])


def test_weight_share_files_round_trip_and_refuse_mixing(tmp_path, digits):
    from veil.core.errors import ModelFileError
    from veil.encrypted.mpc.model import infer_threads, load_weight_shares, save_weight_shares

    x, y, tx, _ = digits
    runs = [
        train_threads(
            _net(), parts_of(x[:64], y[:64]), 10, Schedule(steps=2, batch=8), keep_shared=True
        )  # fmt: skip
        for _ in range(2)
    ]
    paths = []
    for r, run in enumerate(runs):
        for party, shares in enumerate(run["weight_shares"]):
            paths.append(tmp_path / f"run{r}.party{party}.vshares")
            save_weight_shares(paths[-1], shares, party, 2, run["sharing_id"])
    shares, meta = load_weight_shares(paths[0])
    assert meta["party"] == 0 and meta["sharing_id"] == runs[0]["sharing_id"]
    for got, want in zip(shares, runs[0]["weight_shares"][0], strict=True):
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    images = tx[:5].numpy().reshape(5, -1)
    mixed = [load_weight_shares(paths[0])[0], load_weight_shares(paths[3])[0]]  # two runs
    with pytest.raises(MPCError, match="different sharings"):
        ids = [runs[0]["sharing_id"], runs[1]["sharing_id"]]
        infer_threads(None, images, weight_shares=mixed, sharing_ids=ids)
    paths[1].write_bytes(paths[1].read_bytes()[:-9])  # truncated
    with pytest.raises((MPCError, ModelFileError)):
        load_weight_shares(paths[1])
