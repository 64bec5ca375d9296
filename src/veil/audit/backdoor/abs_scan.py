"""ABS-lite (Liu et al. 2019, "Artificial Brain Stimulation"): find neurons that, raised
alone, force one label on every input; reverse-engineer the trigger that raises them; score
it by how often it flips clean inputs (REASR).

1. **Stimulation analysis** on the last hidden layer (the output of the last activation of
   the network's top-level ``Sequential``): for each neuron, clamp its activation to values
   up to ``stimulation`` times the layer's largest clean activation, keep the rest of the
   layer as the clean input produced it, and run the head. A neuron whose raised value
   sends *every* sampled input to one label t is a candidate; its elevation is the smallest
   logit margin of t over the runner-up across the inputs, at its best value.
2. **Trigger reverse engineering** for the ``top`` candidates: a mask (at most ``bound`` of
   the pixels, by a hinge penalty) and a pattern, optimised so that stamped clean inputs
   raise the candidate neuron and not the others of its layer.
3. **REASR**: the share of clean inputs of other labels that the stamped trigger sends to t.
   A label is flagged when a candidate's REASR reaches ``threshold``.

"lite": one layer, pixel-space patch triggers only (no feature-space triggers), and a
fixed small input sample, as in the paper's default configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from veil.core.data import ArrayDataset
from veil.core.errors import ConfigError
from veil.core.train import seed_everything

ACTIVATIONS = (nn.ReLU, nn.Tanh, nn.GELU, nn.Sigmoid, nn.LeakyReLU)


@dataclass(frozen=True)
class AbsConfig:
    """Sample sizes, the stimulation sweep, and the reverse-engineering budget."""

    images: int = 20
    values: int = 8
    stimulation: float = 30.0
    top: int = 10
    steps: int = 300
    lr: float = 0.1
    bound: float = 0.06
    threshold: float = 0.9
    seed: int = 0


@dataclass
class Candidate:
    """A neuron that forces ``label`` when raised, and how its reversed trigger did."""

    neuron: int
    label: int
    elevation: float
    reasr: float = 0.0
    trigger: torch.Tensor | None = field(default=None, repr=False)


@dataclass
class AbsResult:
    """Candidates (best first), the labels flagged, and the largest REASR."""

    candidates: list[Candidate]
    flagged: list[int]
    max_reasr: float
    layer: str

    @property
    def backdoored(self) -> bool:
        return bool(self.flagged)


def split_at_last_hidden(model: nn.Module) -> tuple[nn.Module, nn.Module, str]:
    """The network up to its last hidden activation, the head after it, and a name."""
    if not isinstance(model, nn.Sequential):
        raise ConfigError("ABS scans a network whose top level is an nn.Sequential")
    acts = [i for i, m in enumerate(model) if isinstance(m, ACTIVATIONS)]
    if not acts or acts[-1] == len(model) - 1:
        raise ConfigError("ABS needs a hidden activation before the last layer")
    i = acts[-1]
    return model[: i + 1], model[i + 1 :], f"layer {i} ({type(model[i]).__name__})"


@torch.no_grad()
def stimulate(prefix: nn.Module, head: nn.Module, x: torch.Tensor, cfg: AbsConfig):
    """Every neuron's (label, elevation) when raised alone, for the inputs ``x``."""
    h = prefix(x).flatten(1)
    n, units = h.shape
    values = torch.linspace(0, cfg.stimulation * float(h.max().clamp_min(1e-6)), cfg.values)
    found = []
    for unit in range(units):
        raised = h.repeat(len(values), 1)
        raised[:, unit] = values.repeat_interleave(n)
        logits = head(raised).view(len(values), n, -1)
        top2 = logits.topk(2, dim=-1)
        labels = top2.indices[..., 0]
        margin = top2.values[..., 0] - top2.values[..., 1]
        agree = (labels == labels[:, :1]).all(1)  # every input sent to one label
        if not agree.any():
            continue
        best = margin.min(1).values.masked_fill(~agree, float("-inf")).argmax()
        found.append(Candidate(unit, int(labels[best, 0]), float(margin[best].min())))
    return sorted(found, key=lambda c: -c.elevation)


def reverse_engineer(
    prefix: nn.Module, x: torch.Tensor, unit: int, cfg: AbsConfig, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A mask (H, W) and pattern (C, H, W) whose stamp raises ``unit`` above its layer."""
    _, c, hgt, wid = x.shape
    mask_z = torch.full((1, 1, hgt, wid), -2.0) + 0.1 * torch.randn((1, 1, hgt, wid), generator=gen)
    pattern_z = torch.randn((1, c, hgt, wid), generator=gen)
    mask_z.requires_grad_(True)
    pattern_z.requires_grad_(True)
    opt = torch.optim.Adam([mask_z, pattern_z], lr=cfg.lr)
    budget = cfg.bound * hgt * wid
    for _ in range(cfg.steps):
        mask, pattern = torch.sigmoid(mask_z), torch.sigmoid(pattern_z)
        h = prefix((1 - mask) * x + mask * pattern).flatten(1)
        others = torch.cat([h[:, :unit], h[:, unit + 1 :]], 1)
        size = torch.relu(mask.sum() - budget)
        loss = -h[:, unit].mean() + others.mean() + 10.0 * size
        opt.zero_grad()
        loss.backward()
        opt.step()
    return torch.sigmoid(mask_z).detach()[0, 0], torch.sigmoid(pattern_z).detach()[0]


@torch.no_grad()
def reasr(model: nn.Module, x, y, mask, pattern, label: int) -> float:
    """The share of inputs of other labels that the stamped trigger sends to ``label``."""
    keep = y != label
    stamped = (1 - mask) * x[keep] + mask * pattern
    return float((model(stamped).argmax(1) == label).float().mean()) if keep.any() else 0.0


def abs_scan(model: nn.Module, clean: ArrayDataset, cfg: AbsConfig | None = None) -> AbsResult:
    """Scan ``model`` with clean data (the defender's): see the module docstring."""
    cfg = cfg or AbsConfig()
    gen = seed_everything(cfg.seed)
    model.eval()
    prefix, head, layer = split_at_last_hidden(model)
    order = torch.randperm(len(clean), generator=gen)
    x, _ = clean.batch(order[: cfg.images])
    held_x, held_y = clean.batch(order[cfg.images : cfg.images + 500])
    candidates = stimulate(prefix, head, x, cfg)[: cfg.top]
    frozen = [p.requires_grad_(False) for p in model.parameters() if p.requires_grad]
    try:
        for cand in candidates:
            mask, pattern = reverse_engineer(prefix, x, cand.neuron, cfg, gen)
            cand.reasr = reasr(model, held_x, held_y, mask, pattern, cand.label)
            cand.trigger = mask * pattern.mean(0)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    candidates.sort(key=lambda c: -c.reasr)
    flagged = sorted({c.label for c in candidates if c.reasr >= cfg.threshold})
    best = max((c.reasr for c in candidates), default=0.0)
    return AbsResult(candidates, flagged, best, layer)


def guarantee(found: AbsResult, step: str = "backdoor-scan"):
    """The scan's ledger entry, with the best candidates' reversed triggers as images."""
    from veil.audit.reconstruction.scoring import pixels
    from veil.core.guarantees import Guarantee

    shown = [c for c in found.candidates[:4] if c.trigger is not None]
    return Guarantee(
        guarantee="audit",
        tests="model",
        mechanism="ABS (artificial brain stimulation)",
        claim=(
            f"labels {found.flagged} look backdoored (REASR {found.max_reasr:.2f})"
            if found.flagged
            else f"no raised neuron's reversed trigger flips inputs (max REASR "
            f"{found.max_reasr:.2f})"
        ),
        threat_model="an attacker who poisoned training with a patch trigger that a few "
        "neurons of the last hidden layer carry; the defender holds clean data; triggers "
        "spread over many neurons or input-specific (BaN) can evade this scan",
        parameters={"layer": found.layer},
        numbers={
            "labels_flagged": len(found.flagged),
            "max_reasr": found.max_reasr,
            "candidates": len(found.candidates),
        },  # fmt: skip
        evidence={
            "candidates": [
                {
                    "neuron": c.neuron,
                    "label": c.label,
                    "elevation": round(c.elevation, 3),
                    "reasr": round(c.reasr, 3),
                }
                for c in found.candidates
            ],  # fmt: skip
            "images": [
                {
                    "title": f"n{c.neuron}→{c.label}: {c.reasr:.2f}",
                    "pixels": pixels(c.trigger[None] / c.trigger.max().clamp_min(1e-6)),
                }
                for c in shown
            ],  # fmt: skip
        },
        status="violated" if found.flagged else "supported",
        step=step,
    )
