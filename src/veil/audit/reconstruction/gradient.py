"""Gradient inversion: can a curious server rebuild training examples from a shared update?

The attacker knows the model's weights and the update a participant shared: a full
gradient, a sparse DSSGD upload of the largest coordinates truncated to [-γ, γ], a FedAvg
update (the model change after several local SGD steps on the batch), or a DP-SGD-noised
gradient. It recovers labels from the last layer's bias gradient (iDLG, Zhao et al. 2020,
for one example; counts for a batch) and the inputs by optimising dummy examples so that
their update matches the observed one: cosine distance plus total variation (Geiping et al.
2020, "Inverting Gradients"), over the coordinates it observed, replaying the local steps
for FedAvg. For a linear first layer there is also a closed form: x = ∂L/∂W[i] / ∂L/∂b[i].

Threat model: an honest-but-curious aggregator that sees each participant's update and the
model, and nothing else. For the input reconstruction it is also given the true labels (the
stronger attacker: labels are often public or recovered as above); label recovery is
measured on its own.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from veil.audit.reconstruction.scoring import best, score, tv
from veil.core.errors import ConfigError

SETTINGS = ("full", "dssgd", "fedavg", "dp")
MAX_BATCH = 8


@dataclass
class Observed:
    """What the attacker sees: the update's values, which coordinates it knows, and how the
    update was made (``local_steps`` SGD steps at ``lr``; 1 step: a gradient)."""

    grads: list[torch.Tensor]
    masks: list[torch.Tensor]
    local_steps: int = 1
    lr: float = 0.0


def _gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, create_graph: bool = False):
    loss = nn.functional.cross_entropy(model(x), y)
    return torch.autograd.grad(loss, list(model.parameters()), create_graph=create_graph)


def _update(model, x, y, local_steps: int, lr: float, create_graph: bool = False):
    """The gradient (one step) or FedAvg's model change after ``local_steps`` full-batch SGD
    steps, divided by lr·steps so that it is on a gradient's scale."""
    if local_steps == 1:
        return _gradient(model, x, y, create_graph)
    start = dict(model.named_parameters())
    weights = dict(start)
    for _ in range(local_steps):
        loss = nn.functional.cross_entropy(functional_call(model, weights, (x,)), y)
        grads = torch.autograd.grad(loss, list(weights.values()), create_graph=True)
        weights = {k: w - lr * g for (k, w), g in zip(weights.items(), grads, strict=True)}
    delta = [(start[k] - weights[k]) / (lr * local_steps) for k in start]
    return delta if create_graph else [d.detach() for d in delta]


def _full(grads, local_steps: int = 1, lr: float = 0.0) -> Observed:
    grads = [g.detach() for g in grads]
    return Observed(grads, [torch.ones_like(g, dtype=torch.bool) for g in grads], local_steps, lr)


def observe(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    setting: str = "full",
    theta_up: float = 0.1,
    gamma: float = 1e-2,
    epsilon: float | None = None,
    delta: float = 1e-5,
    clip: float = 1.0,
    local_steps: int = 5,
    lr: float = 0.1,
    seed: int = 0,
) -> Observed:
    """The update a participant with batch (x, y) shares under ``setting``.

    ``dssgd``: the ``theta_up`` fraction of coordinates with the largest |gradient|, values
    truncated to [-gamma, gamma]. ``fedavg``: the model change after ``local_steps`` SGD
    steps at ``lr`` on the batch. ``dp``: per-example gradients clipped to ``clip``, summed,
    Gaussian noise with the σ that one such step costs at (``epsilon``, ``delta``), averaged.
    """
    if setting not in SETTINGS:
        raise ConfigError(f"unknown setting {setting!r}; use one of {', '.join(SETTINGS)}")
    if not 1 <= len(x) <= MAX_BATCH:
        raise ConfigError(f"batches of 1 to {MAX_BATCH} examples, got {len(x)}")
    if setting == "dp":
        return _dp_update(model, x, y, epsilon, delta, clip, seed)
    if setting == "fedavg":
        if local_steps < 1 or lr <= 0:
            raise ConfigError(f"fedavg needs local_steps >= 1 and lr > 0, got {local_steps}, {lr}")
        return _full(_update(model, x, y, local_steps, lr), local_steps, lr)
    grads = [g.detach() for g in _gradient(model, x, y)]
    if setting == "full":
        return _full(grads)
    return _dssgd_upload(grads, theta_up, gamma)


def _dssgd_upload(grads, theta_up: float, gamma: float) -> Observed:
    """What veil.collab's DSSGD participant uploads (its "largest" policy), for a gradient."""
    from veil.collab.policies import count_for, select_upload, truncate

    flat = torch.cat([g.flatten() for g in grads])
    chosen = select_upload(flat.numpy(), count_for(theta_up, flat.numel()), "largest", 0.0, None)
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[torch.from_numpy(chosen)] = True
    values = torch.from_numpy(truncate((flat * keep).numpy(), gamma))
    sizes = [g.numel() for g in grads]
    return Observed(
        [v.view_as(g) for v, g in zip(values.split(sizes), grads, strict=True)],
        [m.view_as(g) for m, g in zip(keep.split(sizes), grads, strict=True)],
    )


def _dp_update(model, x, y, epsilon, delta, clip, seed) -> Observed:
    from veil.dp import calibrate_sigma, make_engine

    if epsilon is None:
        raise ConfigError("the dp setting needs an epsilon")
    sigma = calibrate_sigma(epsilon, 1.0, 1, delta)
    out = make_engine(model, clip, "vmap").clipped_sum(x, y)
    gen = torch.Generator().manual_seed(seed)
    noise = [torch.randn(g.shape, generator=gen) * sigma * clip for g in out.grads]
    return _full((g + n) / len(x) for g, n in zip(out.grads, noise, strict=True))


def _last_bias(model: nn.Module, observed: Observed) -> torch.Tensor:
    biases = [
        g
        for (name, _), g in zip(model.named_parameters(), observed.grads, strict=True)
        if name.endswith("bias")
    ]
    if not biases:
        raise ConfigError("label recovery needs a bias in the last layer")
    return biases[-1]


def recover_label(model: nn.Module, observed: Observed) -> int:
    """iDLG: for one example under cross-entropy, the last layer's bias gradient is
    softmax - onehot, negative only at the true label."""
    return int(_last_bias(model, observed).argmin())


def recover_labels(
    model: nn.Module, observed: Observed, shape: tuple[int, ...], count: int, seed: int = 0
) -> list[int]:
    """The labels of a batch of ``count`` (sorted). The bias gradient of class c is
    mean softmax_c - n_c / count: every class with a negative entry is present, and
    n_c ≈ count·(p̂_c - g_c), with p̂ the model's mean softmax on random inputs."""
    if count == 1:
        return [recover_label(model, observed)]
    g = _last_bias(model, observed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        p_hat = model(torch.rand((64, *shape), generator=gen)).softmax(-1).mean(0)
    want = count * (p_hat - g)
    labels = [int(c) for c in g.argsort()[: min(count, int((g < 0).sum()))]]
    for _ in range(count - len(labels)):
        have = torch.bincount(torch.tensor(labels, dtype=torch.long), minlength=len(g))
        labels.append(int((want - have).argmax()))
    return sorted(labels)


def linear_closed_form(observed: Observed) -> torch.Tensor:
    """The input of a model whose first layer is linear, from that layer's weight and bias
    gradients of one example: x = dW[i] / db[i] for the row with the largest |db[i]|."""
    dw, db = observed.grads[0], observed.grads[1]
    i = int(db.abs().argmax())
    return dw[i] / db[i]


def invert(
    model: nn.Module,
    observed: Observed,
    shape: tuple[int, ...],
    labels: torch.Tensor,
    steps: int = 300,
    lr: float = 0.1,
    tv_weight: float = 1e-3,
    seed: int = 0,
) -> torch.Tensor:
    """Inputs in [0, 1] whose update best matches ``observed`` (cosine + TV, Adam)."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn((len(labels), *shape), generator=gen).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    target = [g * m for g, m in zip(observed.grads, observed.masks, strict=True)]
    tnorm = math.sqrt(sum(float((t * t).sum()) for t in target)) + 1e-12
    for _ in range(steps):
        opt.zero_grad()
        x = torch.sigmoid(z)
        grads = _update(model, x, labels, observed.local_steps, observed.lr, create_graph=True)
        dot, norm2 = 0.0, 0.0
        for g, t, m in zip(grads, target, observed.masks, strict=True):
            gm = g * m
            dot = dot + (gm * t).sum()
            norm2 = norm2 + (gm * gm).sum()
        loss = 1 - dot / (norm2.sqrt() * tnorm + 1e-12) + tv_weight * tv(x)
        loss.backward()
        opt.step()
    return torch.sigmoid(z).detach()


def _label_hits(found: list[int], true: torch.Tensor) -> int:
    """How many of a batch's labels were recovered (as a multiset)."""
    return sum((Counter(found) & Counter(true.tolist())).values())


def audit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    setting: str = "full",
    steps: int = 300,
    threshold_db: float = 20.0,
    batch: int = 1,
    **update,
) -> dict:
    """Invert one update per batch of ``batch`` examples and score every reconstruction
    (matched to its image); ``best`` keeps the four closest reconstructions for the report."""
    if not 1 <= batch <= MAX_BATCH or len(x) % batch:
        raise ConfigError(f"batch must be 1 to {MAX_BATCH} and divide {len(x)} examples")
    shape = tuple(x.shape[1:])
    psnrs, ssims, recons, hits = [], [], [], 0
    for b, i in enumerate(range(0, len(x), batch)):
        xb, yb = x[i : i + batch], y[i : i + batch]
        seen = observe(model, xb, yb, setting, seed=b, **update)
        hits += _label_hits(recover_labels(model, seen, shape, batch), yb)
        recon = invert(model, seen, shape, yb, steps=steps, tv_weight=1e-4, seed=b)
        s = score(xb, recon, threshold_db)
        psnrs += s["psnr"]
        ssims += s["ssim"]
        recons += [recon[j] for j in s["order"]]
    titles = [f"#{i}: {p:.1f} dB" for i, p in enumerate(psnrs)]
    return {
        "images": len(x),
        "batch": batch,
        "mean_psnr": float(np.mean(psnrs)),
        "mean_ssim": float(np.mean(ssims)),
        "recovered": int(sum(p >= threshold_db for p in psnrs)),
        "threshold_db": threshold_db,
        "label_recovery_accuracy": hits / len(x),
        "best": best(torch.stack(recons), psnrs, titles),
    }


def guarantee(result: dict, setting: str, update: dict, step: str = ""):
    """The audit's ledger entry: how many examples came back above the threshold, with the
    best reconstructions as evidence (what the server would see)."""
    from veil.core.guarantees import Guarantee

    what = {
        "full": "a full gradient",
        "dssgd": f"a DSSGD upload (θu={update.get('theta_up')})",
        "fedavg": f"a FedAvg update ({update.get('local_steps', 5)} local steps)",
        "dp": f"a DP-SGD step (ε={update.get('epsilon')})",
    }[setting]
    return Guarantee(
        guarantee="audit",
        tests="training-data",
        mechanism="gradient inversion (Geiping et al. 2020; iDLG labels)",
        claim=f"from {what} of a batch of {result['batch']}: {result['recovered']}/"
        f"{result['images']} images recovered above {result['threshold_db']:.0f} dB "
        f"(mean PSNR {result['mean_psnr']:.1f} dB)",
        threat_model="An honest-but-curious aggregator that knows the model and sees one "
        "participant's update for one batch at a time.",
        parameters={"setting": setting, **{k: v for k, v in update.items() if v is not None}},
        numbers={k: v for k, v in result.items() if isinstance(v, int | float)},
        evidence={"images": result["best"]},
        status="supported" if result["recovered"] == 0 else "violated",
        step=step,
    )
