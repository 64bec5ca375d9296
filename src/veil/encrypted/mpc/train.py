"""Secure training: SGD on secret-shared data and weights (an MLP, softmax cross-entropy).

Two or three parties each bring training records (hospitals, say); party 0 also brings
the initial model. Records and weights are shared at once and never opened: forward and
backward passes run on shares (Beaver matmuls, the comparison ReLU whose bit is also the
derivative, the softmax of :mod:`veil.encrypted.mpc.approx`), and the update
W <- W - lr·∇ is local. The batch order is public (a seed both parties know); what it
indexes is not. At the end the trained weights are revealed to party 0 only.

Threat model as for inference (semi-honest, non-colluding parties and a dealer that
colludes with none): each party sees only uniform shares of the others' records, and only
party 0 receives the weights. The trained model itself is not differentially private:
what it reveals about its training records is a training-data question (``veil.dp``,
``veil audit``), not this one.

Fixed point: 16 fractional bits, as for inference. Not more: the local truncation after
each product fails (a ±2^(64-f) error) with probability about |x|·2^(2f-64) per element, and
a training run truncates millions of elements. At 20 bits two 500-step MNIST runs each hit
a failure (weights near 1e9, 11-12% accuracy); at 16 bits the same runs matched plaintext
(90.52% vs 90.47%, 90.43% vs 90.42%).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from veil.encrypted.mpc.approx import softmax
from veil.encrypted.mpc.comm import Comm
from veil.encrypted.mpc.protocols import Party, serve_dealer, setup_seeds
from veil.encrypted.mpc.ring import FRAC_BITS, MPCError, decode, encode


@dataclass
class Schedule:
    """The public part of a training run: steps, batch size, learning rate, order seed."""

    steps: int = 100
    batch: int = 32
    lr: float = 0.1
    seed: int = 0

    def batches(self, n: int) -> list[np.ndarray]:
        """Row indices of every step: seeded shuffles of 0..n-1, cut into batches."""
        if self.steps < 1 or not 1 <= self.batch <= n or self.lr <= 0:
            raise MPCError(f"steps >= 1, 1 <= batch <= {n} and lr > 0 needed, got {self}")
        rng, order = np.random.default_rng(self.seed), np.empty(0, dtype=np.int64)
        while len(order) < self.steps * self.batch:
            order = np.concatenate([order, rng.permutation(n)])
        return [order[i * self.batch : (i + 1) * self.batch] for i in range(self.steps)]


def mlp_layers(model: nn.Module) -> list[nn.Linear]:
    """The Linear layers of an MLP (Flatten, then Linear layers with ReLU between them)."""
    mods = [m for m in model.modules() if not isinstance(m, nn.Sequential)]
    mods = mods[1:] if mods and isinstance(mods[0], nn.Flatten) else mods
    linears = mods[0::2]
    ok = all(isinstance(m, nn.Linear) for m in linears) and all(
        isinstance(m, nn.ReLU) for m in mods[1::2]
    )
    if not linears or not ok or len(mods) != 2 * len(linears) - 1:
        names = [type(m).__name__ for m in mods]
        raise MPCError(f"secure training takes an MLP (Linear, ReLU, ..., Linear), got {names}")
    return linears


def sgd_step(party: Party, weights: list, x: torch.Tensor, onehot: torch.Tensor, lr: float):
    """One SGD step on shares: ``weights`` is [(W (in, out), b (out,)), ...]; returns the
    updated list. Softmax cross-entropy, mean over the batch."""
    acts, masks, h = [x], [], x
    for i, (w, b) in enumerate(weights):
        h = party.matmul(h, w) + b
        if i < len(weights) - 1:
            h, keep = party.relu_and_mask(h)
            acts.append(h)
            masks.append(keep)
    g = party.scale(softmax(party, h) - onehot, lr / len(x))  # lr·∂loss/∂logits
    updated = []
    for i in reversed(range(len(weights))):
        w, b = weights[i]
        step_w, step_b = party.matmul(acts[i].T.contiguous(), g), g.sum(0)
        if i > 0:
            g = party.mul(party.matmul(g, w.T.contiguous()), masks[i - 1], truncate=False)
        updated.append((w - step_w, b - step_b))
    return updated[::-1]


def _share_rows(party: Party, mine, frac: int, width: int) -> torch.Tensor:
    """Every party's rows (announced counts, then shared), by rank."""
    count = torch.tensor([0 if mine is None else len(mine)], dtype=torch.int64)
    counts = [int(c.item()) for c in party.comm.announce(count)]
    parts = []
    for owner, n in enumerate(counts):
        value = encode(np.asarray(mine).reshape(n, width), frac) if owner == party.rank else None
        parts.append(party.share(owner, value, (n, width)))
    return torch.cat(parts)


def train_party(
    comm: Comm,
    model: nn.Module | None,
    x: np.ndarray | None,
    y: np.ndarray | None,
    classes: int,
    schedule: Schedule,
    frac: int = FRAC_BITS,
    keep_shared: bool = False,
) -> dict:
    """One rank of a secure training run. Party 0 passes the initial ``model`` (its layer
    sizes are sent to party 1); each party passes its records ``x`` (n, features) and
    labels ``y``, or None. Party 0's result holds the trained weights; with
    ``keep_shared`` nobody gets them: each party's result holds its ``weight_shares``
    [(W (in, out), b), ...], for inference on shares (:func:`veil.encrypted.mpc.model.
    run_party`) where neither the model nor the input is ever whole."""
    if comm.rank == comm.dealer:
        return {"dealer_requests": serve_dealer(comm, setup_seeds(comm))}
    party = Party(comm, setup_seeds(comm), frac)
    sizes = _agree_on_sizes(party, model)
    rows = _share_rows(party, x, frac, sizes[0][0])
    labels = None if y is None else np.eye(classes)[np.asarray(y, dtype=np.int64)]
    onehot = _share_rows(party, labels, frac, classes)
    weights, layers = [], mlp_layers(model) if comm.rank == 0 else [None] * len(sizes)
    for layer, (n_in, n_out) in zip(layers, sizes, strict=True):
        w = encode(layer.weight.detach().T, frac) if layer is not None else None
        b = encode(layer.bias.detach(), frac) if layer is not None else None
        weights.append((party.share(0, w, (n_in, n_out)), party.share(0, b, (n_out,))))
    start = time.perf_counter()
    for idx in schedule.batches(len(rows)):
        idx = torch.from_numpy(idx)
        weights = sgd_step(party, weights, rows[idx], onehot[idx], schedule.lr)
    seconds = time.perf_counter() - start
    if keep_shared:  # party 0 names the sharing, so that shares of two runs never mix
        mine = torch.tensor([[secrets.randbits(62)]]) if comm.rank == 0 else None
        sharing = int(party.publish(0, mine, 1, 1, "sharing ids")[0, 0])
        party.stop_dealer()
        return {"traffic": comm.traffic.to_dict(), "seconds": seconds, "records": len(rows),
                "weight_shares": weights, "sharing_id": sharing}  # fmt: skip
    opened = [(party.reveal_to(0, w), party.reveal_to(0, b)) for w, b in weights]
    party.stop_dealer()
    out = {"traffic": comm.traffic.to_dict(), "seconds": seconds, "records": len(rows)}
    if comm.rank == 0:
        out["weights"] = [(decode(w, frac).T, decode(b, frac)) for w, b in opened]
    return out


def _agree_on_sizes(party: Party, model: nn.Module | None) -> list[tuple[int, int]]:
    mine = None
    if party.rank == 0:
        mine = torch.tensor([(m.in_features, m.out_features) for m in mlp_layers(model)])
    sizes = [tuple(r) for r in party.publish(0, mine, 2, 64, "layers").tolist()]
    if any(not 1 <= a <= 1 << 20 or not 1 <= b <= 1 << 20 for a, b in sizes):
        raise MPCError(f"party 0 announced layer sizes {sizes}")
    return sizes


def load_weights(model: nn.Module, weights: list) -> nn.Module:
    """Put trained (W (out, in), b) arrays into the model's Linear layers."""
    with torch.no_grad():
        for layer, (w, b) in zip(mlp_layers(model), weights, strict=True):
            layer.weight.copy_(torch.as_tensor(w, dtype=layer.weight.dtype))
            layer.bias.copy_(torch.as_tensor(b, dtype=layer.bias.dtype))
    return model


def train_threads(
    model: nn.Module,
    parts: list[tuple[np.ndarray, np.ndarray]],
    classes: int,
    schedule: Schedule,
    frac: int = FRAC_BITS,
    keep_shared: bool = False,
) -> dict:
    """Secure training with the parties (one per entry of ``parts``, each party's (records,
    labels); 2 or 3) and the dealer as threads of this process. Returns the trained model
    (a copy), or with ``keep_shared`` every party's ``weight_shares`` (by rank)."""
    import copy

    from veil.encrypted.mpc.comm import run_threads

    def program(comm: Comm) -> dict:
        if comm.rank == comm.dealer:
            return train_party(comm, None, None, None, classes, schedule, frac)
        x, y = parts[comm.rank]
        mine = model if comm.rank == 0 else None
        return train_party(comm, mine, x.reshape(len(x), -1), y, classes, schedule, frac,
                           keep_shared)  # fmt: skip

    owner, *others, dealer = run_threads(len(parts), program)
    out = {"traffic": [owner["traffic"], *[o["traffic"] for o in others]],
           "seconds": owner["seconds"], "records": owner["records"], **dealer}  # fmt: skip
    if keep_shared:
        return {**out, "weight_shares": [r["weight_shares"] for r in (owner, *others)],
                "sharing_id": owner["sharing_id"]}  # fmt: skip
    return {**out, "model": load_weights(copy.deepcopy(model), owner["weights"])}


def plain_sgd(model: nn.Module, x: np.ndarray, y: np.ndarray, schedule: Schedule) -> nn.Module:
    """The same steps in float64 in the clear: the reference secure training must match."""
    import copy

    ref = copy.deepcopy(model).double()
    xs = torch.as_tensor(np.asarray(x, dtype=np.float64).reshape(len(x), -1))
    ys = torch.as_tensor(np.asarray(y, dtype=np.int64))
    opt = torch.optim.SGD(ref.parameters(), lr=schedule.lr)
    for idx in schedule.batches(len(xs)):
        opt.zero_grad()
        nn.functional.cross_entropy(ref(xs[idx]), ys[idx]).backward()
        opt.step()
    return ref.float()


def parts_of(x: np.ndarray, y: np.ndarray, parties: int = 2) -> list[tuple]:
    """Each party's records from one array (every ``parties``-th row), for runs on a public
    data set."""
    return [(x[r::parties].reshape(len(x[r::parties]), -1), y[r::parties])
            for r in range(parties)]  # fmt: skip


def pooled(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The records in the order the shared rows have (party 0's first): the order in which
    a plaintext reference must index them to take the same steps."""
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])


def guarantee(numbers: dict, schedule: Schedule, step: str = "mpc-train", parties: int = 2,
              keep_shared: bool = False):  # fmt: skip
    """The input-privacy claim of a secure training run, with its measurements."""
    from veil.core.guarantees import Guarantee

    who = ("nobody receives the trained weights: each party keeps its share of them"
           if keep_shared else "the trained weights go to party 0 only")  # fmt: skip
    return Guarantee(
        guarantee="input",
        mechanism="secure two-party training (secret sharing)",
        claim="each party's training records stay secret-shared throughout SGD: the other "
        f"party and the dealer see only uniform shares; {who}",
        threat_model=f"{'two' if parties == 2 else 'three'} semi-honest parties of which none "
        "colludes with another, and a dealer that colludes with none; the batch order and "
        "layer sizes are public; the trained model is not differentially private (what it "
        "reveals about its records is audited separately)",
        parameters={
            "protocol": "additive sharing over Z_2^64, Beaver triples, comparison ReLU, "
            "softmax by exp/reciprocal approximations",
            "parties": parties,
            "fixed_point_bits": FRAC_BITS,
            "steps": schedule.steps,
            "batch": schedule.batch,
            "lr": schedule.lr,
            "model_kept_shared": keep_shared,
        },
        numbers=dict(numbers),
        step=step,
    )
