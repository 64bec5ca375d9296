"""Empirical DP auditing in one training run (Steinke, Nasr & Jagielski 2023).

m canaries (examples given a wrong label) are each put in the training set with
probability 1/2, independently. After one training run, the auditor scores every canary
(the model's log-probability of its wrong label), guesses "in" for the k highest scores
and "out" for the k lowest, and counts correct guesses. For an (ε, δ)-DP training run the
number of correct guesses among r = 2k is dominated by Binomial(r, e^ε/(1+e^ε)), up to a
δ term; so an observed count that this binomial makes rarer than β refutes ε. The largest
ε refuted is a lower bound on the true ε, at confidence 1 - β.

The δ term is handled conservatively: the test runs at β - 2·m·δ (Steinke et al., Thm 3.3
bound the slack by a multiple of m·δ; for m = 1,000 and δ = 1e-5 this is 0.02).
A model trained without privacy should get a large lower bound; a DP model's must stay
at or below its claimed ε, or its accounting (or its code) is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from veil.core.data import ArrayDataset
from veil.core.errors import ConfigError
from veil.core.train import batches


@dataclass(frozen=True)
class AuditResult:
    """Guesses made, how many were right, and the ε lower bound they prove."""

    canaries: int
    guesses: int
    correct: int
    epsilon_lower_bound: float
    confidence: float


def _tail(r: int, c: int, eps: float) -> float:
    """P[Binomial(r, e^ε/(1+e^ε)) >= c]."""
    from scipy.stats import binom

    return float(binom.sf(c - 1, r, 1 / (1 + np.exp(-eps))))


def epsilon_lower_bound(guesses: int, correct: int, beta: float) -> float:
    """The largest ε that ``correct`` right out of ``guesses`` refutes at level ``beta``."""
    if guesses == 0 or _tail(guesses, correct, 0.0) >= beta:
        return 0.0  # not even ε = 0 is refuted
    lo, hi = 0.0, 1.0
    while _tail(guesses, correct, hi) < beta and hi < 100:
        lo, hi = hi, hi * 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _tail(guesses, correct, mid) < beta else (lo, mid)
    return lo


def make_canaries(pool: ArrayDataset, m: int, seed: int = 0):
    """``m`` examples of ``pool`` with wrong labels, which of them go in (prob. 1/2), and
    their indices in ``pool``."""
    if m < 2 or m > len(pool):
        raise ConfigError(f"need 2 to {len(pool)} canaries, got {m}")
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.permutation(len(pool))[:m])
    x, y = pool.batch(torch.as_tensor(idx))
    shift = torch.as_tensor(rng.integers(1, pool.num_classes, m))
    wrong = (y + shift) % pool.num_classes
    canaries = ArrayDataset(x, wrong, classes=pool.classes, name="canaries", split="train")
    return canaries, rng.random(m) < 0.5, idx


@torch.no_grad()
def canary_scores(model: nn.Module, canaries: ArrayDataset) -> np.ndarray:
    """The model's log-probability of each canary's (wrong) label."""
    model.eval()
    out = []
    for x, y in batches(canaries, 1024):
        out.append(torch.log_softmax(model(x), 1).gather(1, y[:, None]).squeeze(1).numpy())
    return np.concatenate(out)


def one_run_audit(
    train_fn: Callable[[ArrayDataset], nn.Module],
    data: ArrayDataset,
    pool: ArrayDataset,
    canaries: int = 1000,
    guesses: int | None = None,
    delta: float = 1e-5,
    confidence: float = 0.95,
    seed: int = 0,
) -> AuditResult:
    """Train once on ``data`` plus a random half of ``canaries`` drawn from ``pool`` (kept
    apart from ``data``), then turn the canaries' guesses into an ε lower bound."""
    canary_set, inside, _ = make_canaries(pool, canaries, seed)
    xs, ys = data.batch(torch.arange(len(data)))
    cx, cy = canary_set.batch(torch.as_tensor(np.flatnonzero(inside)))
    training = ArrayDataset(
        torch.cat([xs, cx]),
        torch.cat([ys, cy]),
        classes=data.classes,
        name=data.name,
        split="train",
    )
    scores = canary_scores(train_fn(training), canary_set)
    k = (guesses or canaries // 5) // 2
    order = np.argsort(scores)
    guessed_in, guessed_out = order[-k:], order[:k]
    correct = int(inside[guessed_in].sum() + (~inside[guessed_out]).sum())
    beta = (1 - confidence) - 2 * canaries * delta
    if beta <= 0:
        raise ConfigError(f"δ={delta} is too large for {canaries} canaries at this confidence")
    return AuditResult(
        canaries, 2 * k, correct, epsilon_lower_bound(2 * k, correct, beta), confidence
    )


def dp_audit_guarantee(result: AuditResult, epsilon: float | None, step: str = ""):
    """The ledger entry: measured ε lower bound beside the claim (violated if it exceeds it)."""
    from veil.core.guarantees import Guarantee

    lb = result.epsilon_lower_bound
    holds = epsilon is None or lb <= epsilon
    claimed = f" (claimed ε = {epsilon:.3g})" if epsilon is not None else " (no ε claimed)"
    return Guarantee(
        guarantee="audit",
        tests="training-data",
        mechanism="DP audit (one-run, canaries)",
        claim=f"measured ε lower bound {lb:.3g} at {result.confidence:.0%} confidence{claimed}",
        threat_model="the auditor inserts mislabelled canaries and sees the final model",
        parameters={"canaries": result.canaries, "guesses": result.guesses},
        numbers={
            "epsilon_lower_bound": lb,
            "correct": result.correct,
            **({"epsilon": epsilon} if epsilon is not None else {}),
        },
        status="supported" if holds else "violated",
        step=step,
    )
