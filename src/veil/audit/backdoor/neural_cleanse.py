"""Neural Cleanse (Wang et al. 2019): reverse-engineer a trigger per label, flag outliers.

For each label t, find the smallest mask m (H×W, in [0, 1]) and pattern p (C×H×W, in [0, 1])
such that stamping ``(1 - m)·x + m·p`` sends clean inputs to t: minimise cross-entropy to t
plus λ·|m|₁. λ follows the paper's schedule: start at ``init_cost``; once the attack works
(success ≥ ``success``) for ``patience`` checks in a row, multiply λ by ``multiplier``; once
it fails that long, divide by ``multiplier``^1.5. The smallest |m|₁ that worked is the
label's score. A backdoor's target needs a much smaller mask than the other labels: the
anomaly index of a label below the median is (median − |m|₁) / (1.4826·MAD), and a label is
flagged above 2 (the paper's threshold).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from veil.core.data import ArrayDataset
from veil.core.train import batches, seed_everything

MAD_CONSTANT = 1.4826  # makes the MAD a consistent estimator of a normal's sigma
ANOMALY_THRESHOLD = 2.0


@dataclass(frozen=True)
class CleanseConfig:
    """Optimisation budget and the λ schedule (the paper's defaults where it gives them)."""

    steps: int = 300
    batch_size: int = 128
    lr: float = 0.1
    init_cost: float = 1e-3
    multiplier: float = 1.5
    patience: int = 5
    success: float = 0.99
    check_every: int = 10
    seed: int = 0


@dataclass
class CleanseResult:
    """Per-label mask norms, anomaly indices, flagged labels, and the reversed triggers."""

    norms: list[float]
    anomaly: list[float]
    flagged: list[int]
    masks: list[torch.Tensor] = field(repr=False, default_factory=list)
    patterns: list[torch.Tensor] = field(repr=False, default_factory=list)

    @property
    def backdoored(self) -> bool:
        return bool(self.flagged)


def anomaly_indices(norms: list[float]) -> list[float]:
    """(median − norm) / (1.4826·MAD) for labels below the median, 0 for the others."""
    t = torch.tensor(norms, dtype=torch.float64)
    median = t.median()
    mad = (t - median).abs().median() * MAD_CONSTANT
    if mad == 0:
        return [0.0] * len(norms)
    return [float(max(0.0, (median - n) / mad)) for n in t]


def reverse_trigger(
    model: nn.Module, data: ArrayDataset, target: int, cfg: CleanseConfig
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """The smallest working mask for ``target`` (its L1 norm, the mask, the pattern)."""
    gen = seed_everything(cfg.seed + target)
    c, h, w = data.input_shape
    mask_p = torch.full((1, h, w), -2.0, requires_grad=True)  # sigmoid(-2) ≈ 0.12
    pattern_p = torch.zeros((c, h, w), requires_grad=True)
    opt = torch.optim.Adam([mask_p, pattern_p], lr=cfg.lr, betas=(0.5, 0.9))
    cost, up, down = cfg.init_cost, 0, 0
    best = (float("inf"), None, None)
    stream = _forever(data, cfg.batch_size, gen)
    hits = seen = 0
    for step in range(1, cfg.steps + 1):
        x, _ = next(stream)
        mask, pattern = torch.sigmoid(mask_p), torch.sigmoid(pattern_p)
        logits = model((1 - mask) * x + mask * pattern)
        y = torch.full((len(x),), target)
        loss = nn.functional.cross_entropy(logits, y) + cost * mask.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        hits += int((logits.argmax(1) == target).sum())
        seen += len(x)
        if step % cfg.check_every:
            continue
        rate, norm = hits / seen, float(mask.detach().sum())
        hits = seen = 0
        if rate >= cfg.success and norm < best[0]:
            best = (norm, mask.detach().clone(), pattern.detach().clone())
        up, down = (up + 1, 0) if rate >= cfg.success else (0, down + 1)
        if up >= cfg.patience:
            cost, up = cost * cfg.multiplier, 0
        elif down >= cfg.patience:
            cost, down = cost / cfg.multiplier**1.5, 0
    if best[1] is None:  # never worked: the whole image is the (uninformative) trigger
        return float(h * w), torch.ones(1, h, w), torch.sigmoid(pattern_p).detach()
    return best


def _forever(data: ArrayDataset, batch_size: int, gen: torch.Generator):
    while True:
        yield from batches(data, batch_size, shuffle=True, generator=gen)


def neural_cleanse(
    model: nn.Module, data: ArrayDataset, cfg: CleanseConfig | None = None
) -> CleanseResult:
    """Reverse-engineer a trigger for every label of ``data`` (clean inputs held by the
    defender) and flag the labels whose mask is anomalously small."""
    cfg = cfg or CleanseConfig()
    model.eval()
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:  # only the mask and pattern learn
        p.requires_grad_(False)
    try:
        found = [reverse_trigger(model, data, t, cfg) for t in range(data.num_classes)]
    finally:
        for p in trainable:  # as they were: frozen layers stay frozen
            p.requires_grad_(True)
    norms = [f[0] for f in found]
    anomaly = anomaly_indices(norms)
    flagged = [t for t, a in enumerate(anomaly) if a > ANOMALY_THRESHOLD]
    return CleanseResult(norms, anomaly, flagged, [f[1] for f in found], [f[2] for f in found])


def guarantee(found: CleanseResult, step: str = "backdoor-scan"):
    """The scan's ledger entry: anomaly indices, and the flagged labels' triggers."""
    from veil.core.guarantees import Guarantee

    return Guarantee(
        guarantee="audit",
        tests="model",
        mechanism="Neural Cleanse",
        claim=(
            f"labels {found.flagged} look backdoored"
            if found.flagged
            else "no label has an anomalously small trigger"
        ),
        threat_model="an attacker who poisoned training with a small patch trigger; the "
        "defender holds clean data; large or input-specific triggers can evade this scan",
        numbers={"labels_flagged": len(found.flagged), "max_anomaly": max(found.anomaly)},
        evidence={
            "mask_l1_per_label": found.norms,
            "anomaly_index": found.anomaly,
            "triggers": {  # mask x pattern, first channel, of each flagged label
                str(t): (found.masks[t][0] * found.patterns[t][0]).round(decimals=3).tolist()
                for t in found.flagged
            },
        },
        status="violated" if found.flagged else "supported",
        step=step,
    )
