"""DSSGD's choices of what to share (Shokri & Shmatikov 2015): download and upload policies.

Download (server side, a fraction θd of the global parameters):

- ``largest``: the coordinates whose global value changed most (decayed sum of |Δ|);
- ``frequency``: the coordinates updated most often (decayed update counts);
- ``recent``: the coordinates updated most recently.

Upload (participant side, at most ``k`` = θu·|w| coordinates of the local change Δw):

- ``largest``: the ``k`` largest |Δw|;
- ``random``: ``k`` random coordinates among those with |Δw| > τ;
- ``svt``: the paper's differentially private selection: the sparse vector technique over
  |Δw| truncated to [0, γ] against threshold τ (budget ε₁), then Laplace noise on the released
  values (budget ε₂). See :func:`private_selection`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from veil.core.errors import ConfigError

DOWNLOAD_POLICIES = ("largest", "frequency", "recent")
UPLOAD_POLICIES = ("largest", "random", "svt")
SELECTION_SHARE = 8 / 9  # of each upload's ε, the share spent on choosing (the paper's split)


def count_for(fraction: float, size: int) -> int:
    """How many of ``size`` coordinates a fraction θ allows (at least one)."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"a sharing fraction θ must be in (0, 1], got {fraction}")
    return max(1, math.ceil(fraction * size))


def top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores, ascending (ties go to the lower index)."""
    if k >= scores.size:
        return np.arange(scores.size, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")[:k]
    return np.sort(order).astype(np.int64)


def truncate(values: np.ndarray, bound: float | None) -> np.ndarray:
    """Values clipped to [−γ, γ] (unchanged when γ is None)."""
    return values if bound is None else np.clip(values, -bound, bound)


def select_upload(
    delta: np.ndarray, k: int, policy: str, tau: float, rng: np.random.Generator
) -> np.ndarray:
    """The coordinates of ``delta`` a participant uploads under a non-private ``policy``."""
    if policy == "largest":
        return top(np.abs(delta), k)
    if policy == "random":
        candidates = np.flatnonzero(np.abs(delta) > tau)
        if candidates.size > k:
            candidates = rng.choice(candidates, size=k, replace=False)
        return np.sort(candidates).astype(np.int64)
    raise ConfigError(f"unknown upload policy {policy!r}; use one of {', '.join(UPLOAD_POLICIES)}")


@dataclass(frozen=True)
class PrivateSelection:
    """Coordinates chosen by the sparse vector technique, and their noisy, bounded values."""

    indices: np.ndarray
    values: np.ndarray
    epsilon: float  # this upload's whole budget: ε₁ (selection) + ε₂ (values)


def private_selection(
    delta: np.ndarray,
    k: int,
    *,
    epsilon: float,
    bound: float,
    tau: float,
    rng: np.random.Generator,
) -> PrivateSelection:
    """ε-DP upload of at most ``k`` coordinates of ``delta`` (Shokri & Shmatikov 2015, Fig. 3).

    Δw is truncated to [−γ, γ], so one query |Δw_j| moves by at most γ and one released value
    by at most 2γ whatever the participant's data: the guarantee covers the participant's
    whole data set, for this one upload. Selection: the sparse vector technique
    (:func:`veil.dp.sparse_vector`, Lyu, Su & Li 2017 Alg. 1) over the coordinates in random
    order, threshold τ, at most ``k`` answers, budget ε₁ = 8/9·ε. Values: Laplace noise of
    scale 2γk/ε₂ with ε₂ = ε/9, then truncated to [−γ, γ] again (post-processing).
    """
    from veil.dp import sparse_vector

    if bound is None or bound <= 0:
        raise ConfigError("private selection needs a bound γ > 0 on the shared values")
    clipped = truncate(delta.astype(np.float64), bound)
    order = rng.permutation(delta.size)
    eps1 = SELECTION_SHARE * epsilon
    eps2 = epsilon - eps1
    seed = int(rng.integers(2**63))
    svt = sparse_vector(
        np.abs(clipped[order]), tau, eps1, sensitivity=bound, max_above=k, seed=seed
    )
    chosen = np.sort(order[np.asarray(svt.above, dtype=np.int64)]).astype(np.int64)
    noise = rng.laplace(0.0, 2 * bound * k / eps2, size=chosen.size)
    values = truncate(clipped[chosen] + noise, bound)
    return PrivateSelection(chosen, values.astype(np.float32), epsilon)


def download_indices(scores: dict[str, np.ndarray], k: int, policy: str) -> np.ndarray:
    """The ``k`` coordinates a participant downloads under ``policy``, from the server's scores."""
    if policy not in DOWNLOAD_POLICIES:
        raise ConfigError(
            f"unknown download policy {policy!r}; use one of {', '.join(DOWNLOAD_POLICIES)}"
        )
    return top(scores[policy], k)
