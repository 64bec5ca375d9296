"""Gradient inversion: can a curious server rebuild training examples from a shared update?

The attacker knows the model's weights and the update a participant shared (a full
gradient, a sparse DSSGD upload of the largest coordinates truncated to [-γ, γ], or a
DP-SGD-noised gradient). It recovers the label from the last layer's bias gradient (iDLG,
Zhao et al. 2020; single examples) and the input by optimising a dummy example so that its
gradient matches the observed one: cosine distance plus total variation (Geiping et al.
2020, "Inverting Gradients"), over the coordinates it observed. For a linear first layer
there is also a closed form: x = ∂L/∂W[i] / ∂L/∂b[i].

Threat model: an honest-but-curious aggregator that sees each participant's update and the
model, and nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from veil.core.errors import ConfigError
from veil.core.metrics import psnr, ssim

SETTINGS = ("full", "dssgd", "dp")


@dataclass
class Observed:
    """What the attacker sees: the update's values and which coordinates it knows."""

    grads: list[torch.Tensor]
    masks: list[torch.Tensor]


def _gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, create_graph: bool = False):
    loss = nn.functional.cross_entropy(model(x), y)
    return torch.autograd.grad(loss, list(model.parameters()), create_graph=create_graph)


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
    seed: int = 0,
) -> Observed:
    """The update a participant with batch (x, y) shares under ``setting``.

    ``dssgd``: the ``theta_up`` fraction of coordinates with the largest |gradient|, values
    truncated to [-gamma, gamma]. ``dp``: per-example gradients clipped to ``clip``, summed,
    Gaussian noise with the σ that one such step costs at (``epsilon``, ``delta``), averaged.
    """
    if setting not in SETTINGS:
        raise ConfigError(f"unknown setting {setting!r}; use one of {', '.join(SETTINGS)}")
    if setting == "dp":
        return _dp_update(model, x, y, epsilon, delta, clip, seed)
    grads = [g.detach() for g in _gradient(model, x, y)]
    if setting == "full":
        return Observed(grads, [torch.ones_like(g, dtype=torch.bool) for g in grads])
    if not 0 < theta_up <= 1:
        raise ConfigError(f"theta_up must be in (0, 1], got {theta_up}")
    flat = torch.cat([g.flatten() for g in grads])
    k = max(1, int(theta_up * flat.numel()))
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[flat.abs().topk(k).indices] = True
    values = (flat * keep).clamp(-gamma, gamma)
    out_g, out_m, start = [], [], 0
    for g in grads:
        n = g.numel()
        out_g.append(values[start : start + n].view_as(g))
        out_m.append(keep[start : start + n].view_as(g))
        start += n
    return Observed(out_g, out_m)


def _dp_update(model, x, y, epsilon, delta, clip, seed) -> Observed:
    from veil.dp import calibrate_sigma, make_engine

    if epsilon is None:
        raise ConfigError("the dp setting needs an epsilon")
    sigma = calibrate_sigma(epsilon, 1.0, 1, delta)
    out = make_engine(model, clip, "vmap").clipped_sum(x, y)
    gen = torch.Generator().manual_seed(seed)
    grads = [(g + torch.randn(g.shape, generator=gen) * sigma * clip) / len(x) for g in out.grads]
    return Observed(grads, [torch.ones_like(g, dtype=torch.bool) for g in grads])


def recover_label(model: nn.Module, observed: Observed) -> int:
    """iDLG: for one example under cross-entropy, the last layer's bias gradient is
    softmax - onehot, negative only at the true label."""
    biases = [
        g
        for (name, _), g in zip(model.named_parameters(), observed.grads, strict=True)
        if name.endswith("bias")
    ]
    if not biases:
        raise ConfigError("label recovery needs a bias in the last layer")
    return int(biases[-1].argmin())


def linear_closed_form(observed: Observed) -> torch.Tensor:
    """The input of a model whose first layer is linear, from that layer's weight and bias
    gradients of one example: x = dW[i] / db[i] for the row with the largest |db[i]|."""
    dw, db = observed.grads[0], observed.grads[1]
    i = int(db.abs().argmax())
    return dw[i] / db[i]


def _tv(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., 1:] - x[..., :-1]).abs().mean()


def invert(
    model: nn.Module,
    observed: Observed,
    shape: tuple[int, ...],
    labels: torch.Tensor,
    steps: int = 300,
    lr: float = 0.1,
    tv: float = 1e-3,
    seed: int = 0,
) -> torch.Tensor:
    """Inputs in [0, 1] whose gradient best matches ``observed`` (cosine + TV, Adam)."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn((len(labels), *shape), generator=gen).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    target = [g * m for g, m in zip(observed.grads, observed.masks, strict=True)]
    tnorm = math.sqrt(sum(float((t * t).sum()) for t in target)) + 1e-12
    for _ in range(steps):
        opt.zero_grad()
        x = torch.sigmoid(z)
        grads = _gradient(model, x, labels, create_graph=True)
        dot, norm2 = 0.0, 0.0
        for g, t, m in zip(grads, target, observed.masks, strict=True):
            gm = g * m
            dot = dot + (gm * t).sum()
            norm2 = norm2 + (gm * gm).sum()
        loss = 1 - dot / (norm2.sqrt() * tnorm + 1e-12) + tv * _tv(x)
        loss.backward()
        opt.step()
    return torch.sigmoid(z).detach()


def score(true: torch.Tensor, recon: torch.Tensor, threshold_db: float = 20.0) -> dict:
    """PSNR and SSIM of each reconstruction, and the fraction above ``threshold_db``."""
    p = [psnr(t.numpy(), r.numpy()) for t, r in zip(true, recon, strict=True)]
    s = [ssim(t.squeeze(0).numpy(), r.squeeze(0).numpy()) for t, r in zip(true, recon, strict=True)]
    finite = [min(v, 100.0) for v in p]
    return {
        "psnr": finite,
        "ssim": s,
        "mean_psnr": float(np.mean(finite)),
        "recovered_fraction": float(np.mean([v >= threshold_db for v in p])),
    }


def audit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    setting: str = "full",
    steps: int = 300,
    threshold_db: float = 20.0,
    **update,
) -> dict:
    """Invert one update per example (batch 1) and score every reconstruction."""
    scores, labels = [], []
    for i in range(len(x)):
        xi, yi = x[i : i + 1], y[i : i + 1]
        seen = observe(model, xi, yi, setting, seed=i, **update)
        if setting == "full":
            labels.append(recover_label(model, seen) == int(yi[0]))
        recon = invert(model, seen, tuple(xi.shape[1:]), yi, steps=steps, tv=1e-4, seed=i)
        scores.append(score(xi, recon, threshold_db))
    out = {
        "images": len(x),
        "mean_psnr": float(np.mean([s["mean_psnr"] for s in scores])),
        "mean_ssim": float(np.mean([np.mean(s["ssim"]) for s in scores])),
        "recovered": int(sum(s["recovered_fraction"] for s in scores)),
        "threshold_db": threshold_db,
    }
    if labels:
        out["label_recovery_accuracy"] = float(np.mean(labels))
    return out


def guarantee(result: dict, setting: str, update: dict, step: str = ""):
    """The audit's ledger entry: how many examples came back above the threshold."""
    from veil.core.guarantees import Guarantee

    what = {"full": "a full gradient", "dssgd": f"a DSSGD upload (θu={update.get('theta_up')})",
            "dp": f"a DP-SGD step (ε={update.get('epsilon')})"}[setting]  # fmt: skip
    return Guarantee(
        guarantee="audit",
        tests="training-data",
        mechanism="gradient inversion (Geiping et al. 2020; iDLG labels)",
        claim=f"from {what}: {result['recovered']}/{result['images']} images recovered above "
        f"{result['threshold_db']:.0f} dB (mean PSNR {result['mean_psnr']:.1f} dB)",
        threat_model="An honest-but-curious aggregator that knows the model and sees one "
        "participant's update for one example at a time.",
        parameters={"setting": setting, **{k: v for k, v in update.items() if v is not None}},
        numbers={k: v for k, v in result.items() if isinstance(v, int | float)},
        status="supported" if result["recovered"] == 0 else "violated",
        step=step,
    )
