"""Classifying Shamir-shared images on shares, never reconstructing them (imaging -> mpc)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from veil.encrypted.mpc.comm import run_threads
from veil.encrypted.mpc.model import compile_shared, run_party
from veil.imaging import ShareError, split, xor_share


def test_xor_shares_of_k_holders_give_the_secret():
    secret = bytes(range(200))
    shares = split(secret, 3, 5)
    chosen = [shares[0], shares[2], shares[4]]
    indices = [s.index for s in chosen]
    parts = [xor_share(s, indices) for s in chosen]
    assert bytes(np.bitwise_xor.reduce(parts)[: len(secret)]) == secret
    assert bytes(parts[0][: len(secret)]) != secret  # one part alone is not the secret
    with pytest.raises(ShareError, match="holder indices"):
        xor_share(shares[1], indices)


def test_model_runs_on_image_shares_without_reconstruction():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    shared = compile_shared(model, (1, 4, 4))
    images = np.random.default_rng(0).integers(0, 256, size=(5, 16), dtype=np.uint8)
    shares = split(images.tobytes(), 3, 4)
    # party 0 holds share 1; party 1 holds shares 2 and 3 and combines its two terms itself
    indices = [1, 2, 3]
    mine = {
        0: xor_share(shares[0], indices),
        1: xor_share(shares[1], indices) ^ xor_share(shares[2], indices),
    }
    n = images.size

    def program(comm):
        own = mine[comm.rank][:n] if comm.rank < 2 else None
        return run_party(comm, shared if comm.rank == 0 else None, None, 5, image_shares=own)

    _, user, _ = run_threads(2, program)
    plain = shared.forward(images / 255.0)
    assert np.abs(user["logits"] - plain).max() < 1e-2
    assert np.array_equal(user["logits"].argmax(1), plain.argmax(1))
