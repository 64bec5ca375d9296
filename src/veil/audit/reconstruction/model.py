"""Model inversion: what a released model gives away about a class (Fredrikson et al. 2015).

The attacker wants a representative of class c (where a class is one person, their face).
White box: gradient ascent on log p(c | x) over x in [0, 1] with a total-variation prior,
from a grey image. Black box: the attacker only queries the model for confidences; it
estimates the same gradient by finite differences along random directions (antithetic
Gaussian pairs, the NES estimator of Wierstra et al.), within a query budget, and adds the
prior's gradient, which costs no query.

Scoring (done by the auditor, who holds the training data): a class counts as recovered
("identified") when a classifier independent of the model, the nearest class mean of the
training images, puts the reconstruction in c (the attacked model's own confidence would
reward adversarial noise). Also recorded: that confidence, and PSNR/SSIM against c's mean
training image beside a baseline, the mean image of the whole training set against the
same class mean (what an attacker gets without the model). Reconstructions start grey and
keep a grey background, so their PSNR to a dark-background class mean stays low even when
the digit shows.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from veil.audit.reconstruction.scoring import image_psnr, image_ssim, pixels, tv
from veil.core.errors import ConfigError


class BudgetExceeded(RuntimeError):
    """The black-box attacker asked for more queries than its budget."""


class Oracle:
    """Black-box access: confidences for a batch of inputs, counted against a budget."""

    def __init__(self, model: nn.Module, budget: int):
        self.model, self.budget, self.used = model, budget, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.used + len(x) > self.budget:
            raise BudgetExceeded(f"{self.used + len(x)} queries asked, budget {self.budget}")
        self.used += len(x)
        with torch.no_grad():
            return self.model(x).softmax(-1)


def white_box(
    model: nn.Module,
    target: int,
    shape: tuple[int, ...],
    steps: int = 500,
    lr: float = 0.1,
    tv_weight: float = 0.05,
) -> torch.Tensor:
    """Gradient ascent on log p(target | x) - tv_weight·TV(x), x = sigmoid(z), z from 0."""
    z = torch.zeros((1, *shape), requires_grad=True)
    opt = torch.optim.Adam([z], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        x = torch.sigmoid(z)
        loss = -model(x).log_softmax(-1)[0, target] + tv_weight * tv(x)
        loss.backward()
        opt.step()
    return torch.sigmoid(z).detach()[0]


def black_box(
    oracle: Oracle,
    target: int,
    shape: tuple[int, ...],
    pairs: int = 100,
    sigma: float = 1.0,
    lr: float = 0.1,
    tv_weight: float = 0.05,
    seed: int = 0,
) -> torch.Tensor:
    """The white-box ascent with the model's gradient estimated from queries: each step
    spends 2·``pairs`` queries (z ± σu); it runs until the oracle's budget is spent."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.zeros((1, *shape), requires_grad=True)
    opt = torch.optim.Adam([z], lr=lr)
    while oracle.used + 2 * pairs <= oracle.budget:
        u = torch.randn((pairs, *shape), generator=gen)
        with torch.no_grad():
            probe = torch.sigmoid(torch.cat([z + sigma * u, z - sigma * u]))
            logp = oracle(probe)[:, target].clamp_min(1e-12).log()
        diff = (logp[:pairs] - logp[pairs:]).view(pairs, *[1] * len(shape))
        estimate = (diff * u).mean(0, keepdim=True) / (2 * sigma)
        opt.zero_grad()
        (tv_weight * tv(torch.sigmoid(z))).backward()
        z.grad -= estimate  # ascend log p: descend its negative
        opt.step()
    return torch.sigmoid(z).detach()[0]


def class_means(x: torch.Tensor, y: torch.Tensor) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """The classes of (x, y), the mean image of each, and the mean image of all."""
    classes = sorted(int(c) for c in y.unique())
    return classes, torch.stack([x[y == c].mean(0) for c in classes]), x.mean(0)


def evaluate(
    model: nn.Module, recon: torch.Tensor, target: int, x: torch.Tensor, y: torch.Tensor,
    means: tuple | None = None,
) -> dict:  # fmt: skip
    """The reconstruction of ``target`` against the class means of the training data
    (x, y): confidence, PSNR/SSIM to the target's mean and the no-model baseline.
    ``means``: :func:`class_means` of (x, y), when already computed."""
    classes, means, overall = means or class_means(x, y)
    mean_c = means[classes.index(target)]
    with torch.no_grad():
        confidence = float(model(recon[None]).softmax(-1)[0, target])
    nearest = classes[int(((means - recon) ** 2).flatten(1).mean(1).argmin())]
    return {
        "confidence": confidence,
        "psnr_class_mean": image_psnr(mean_c, recon),
        "ssim_class_mean": image_ssim(mean_c, recon),
        "baseline_psnr": image_psnr(mean_c, overall),
        "baseline_ssim": image_ssim(mean_c, overall),
        "identified": nearest == target,
    }


def audit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    classes: list[int],
    black: bool = False,
    queries: int = 20_000,
    steps: int = 500,
    individuals: bool = False,
) -> dict:
    """Invert ``classes`` (white box, or black box with ``queries`` per class) and score
    each against the training data (x, y). ``individuals``: each class is one person (faces,
    a patient's recordings), so a class representative is that person's data."""
    known = {int(c) for c in y.unique()}
    if not classes or not set(classes) <= known:
        raise ConfigError(f"classes must be among {sorted(known)}, got {classes}")
    shape, per_class, images = tuple(x.shape[1:]), [], []
    reference = class_means(x, y)
    model.eval()
    for c in classes:
        if black:
            recon = black_box(Oracle(model, queries), c, shape, seed=c)
        else:
            recon = white_box(model, c, shape, steps=steps)
        per_class.append({"class": c, **evaluate(model, recon, c, x, y, reference)})
        images.append({"title": f"class {c}", "pixels": pixels(recon)})
    mean = {k: float(np.mean([r[k] for r in per_class])) for k in per_class[0] if k != "class"}
    return {
        "access": "black box" if black else "white box",
        "queries": queries if black else 0,
        "classes": len(classes),
        "individuals": individuals,
        "identified": sum(r["identified"] for r in per_class),
        **{f"mean_{k}": v for k, v in mean.items() if k != "identified"},
        "per_class": per_class,
        "images": images,
    }


def guarantee(result: dict, step: str = ""):
    """The audit's ledger entry: how many class representatives the model gave away."""
    from veil.core.guarantees import Guarantee

    budget = f", {result['queries']} queries per class" if result["queries"] else ""
    found = result["identified"]
    what = "people" if result["individuals"] else "class-level features, not any one record"
    return Guarantee(
        guarantee="audit",
        tests="training-data",
        mechanism="model inversion (Fredrikson et al. 2015; TV prior)",
        claim=f"{result['access']}{budget}: {result['identified']}/{result['classes']} class "
        f"representatives recovered (classified as their class by its nearest training "
        f"mean): {what}; model confidence {result['mean_confidence']:.2f}",
        threat_model="A user of the released model who wants a representative of a class: "
        "its weights (white box) or only its confidences (black box, a query budget). DP "
        "bounds what one record changes, not what a class shares, so a recovered class "
        "violates the guarantee only where a class is one person.",
        parameters={k: result[k] for k in ("access", "queries", "individuals")},
        numbers={k: v for k, v in result.items() if type(v) in (int, float)},
        evidence={"images": result["images"], "per_class": result["per_class"]},
        status="violated" if found and result["individuals"] else "supported",
        step=step,
    )
