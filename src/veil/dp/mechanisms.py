"""DP mechanisms: Laplace, Gaussian (analytic calibration), and the sparse vector technique.

Each returns the released value(s) and the accounting event to give an
:class:`~veil.dp.accounting.Accountant`.

Randomness: ``secure=True`` draws noise from NumPy's PCG64 seeded with 256 bits from
``os.urandom`` (and refuses a caller's seed); otherwise a given ``seed`` makes runs
reproducible, which is for experiments only: the guarantee assumes nobody knows the seed.
Noise is sampled in floating point; the low-order-bit attack on textbook floating-point
Laplace (Mironov 2012) is not mitigated here.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from veil.core.errors import ConfigError
from veil.dp.accounting import GaussianEvent, LaplaceEvent, PureEvent


def make_rng(seed: int | None = None, secure: bool = False) -> np.random.Generator:
    """A NumPy generator: fresh from ``os.urandom`` when ``secure`` (or no seed), else seeded."""
    if secure and seed is not None:
        raise ConfigError("secure=True draws its seed from os.urandom; do not pass a seed")
    if secure or seed is None:
        return np.random.Generator(np.random.PCG64(int.from_bytes(os.urandom(32), "big")))
    return np.random.default_rng(seed)


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive finite number, got {value}")


@dataclass(frozen=True)
class Release:
    """A noisy value, the noise scale used, and the accounting event for it."""

    value: np.ndarray | float
    scale: float
    event: GaussianEvent | LaplaceEvent | PureEvent


def laplace(
    value,
    sensitivity: float,
    epsilon: float,
    *,
    seed: int | None = None,
    secure: bool = False,
) -> Release:
    """``value`` plus Laplace noise, scale sensitivity/ε per coordinate: ε-DP (L1)."""
    _positive("epsilon", epsilon)
    _positive("sensitivity", sensitivity)
    scale = sensitivity / epsilon
    arr = np.asarray(value, dtype=np.float64)
    noisy = arr + make_rng(seed, secure).laplace(0.0, scale, size=arr.shape)
    return Release(noisy if arr.ndim else float(noisy), scale, LaplaceEvent(1.0 / epsilon))


def _gaussian_delta(epsilon: float, s: float) -> float:
    """δ of the Gaussian mechanism with noise σ = s·Δ at ε (Balle & Wang 2018, Thm 8)."""
    from scipy.special import log_ndtr, ndtr

    a, b = 1 / (2 * s) - epsilon * s, -1 / (2 * s) - epsilon * s
    return float(ndtr(a) - math.exp(epsilon + log_ndtr(b)))


def analytic_gaussian_sigma(epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    """The smallest σ for which the Gaussian mechanism is (ε, δ)-DP (analytic calibration).

    Exact for any ε > 0 (the classical σ = Δ·sqrt(2 ln(1.25/δ))/ε needs ε < 1 and is loose).
    """
    _positive("epsilon", epsilon)
    _positive("sensitivity", sensitivity)
    if not 0 < delta < 1:
        raise ConfigError(f"delta must be in (0, 1), got {delta}")
    lo, hi = 1e-6, 1.0
    while _gaussian_delta(epsilon, hi) > delta:
        lo, hi = hi, hi * 2
    for _ in range(100):
        mid = (lo + hi) / 2
        if _gaussian_delta(epsilon, mid) > delta:
            lo = mid
        else:
            hi = mid
    return hi * sensitivity


def gaussian(
    value,
    sensitivity: float,
    epsilon: float,
    delta: float,
    *,
    seed: int | None = None,
    secure: bool = False,
) -> Release:
    """``value`` plus Gaussian noise calibrated analytically: (ε, δ)-DP for L2 ``sensitivity``."""
    sigma = analytic_gaussian_sigma(epsilon, delta, sensitivity)
    arr = np.asarray(value, dtype=np.float64)
    noisy = arr + make_rng(seed, secure).normal(0.0, sigma, size=arr.shape)
    return Release(noisy if arr.ndim else float(noisy), sigma, GaussianEvent(sigma / sensitivity))


@dataclass(frozen=True)
class SparseVectorResult:
    """Indices of queries reported above the threshold, how many were read, and the budget."""

    above: list[int]
    answered: int
    epsilon_threshold: float
    epsilon_queries: float
    event: PureEvent
    halted: bool = False
    details: dict = field(default_factory=dict)


def sparse_vector(
    queries,
    threshold: float,
    epsilon: float,
    *,
    sensitivity: float = 1.0,
    max_above: int = 1,
    threshold_share: float | None = None,
    monotonic: bool = False,
    seed: int | None = None,
    secure: bool = False,
) -> SparseVectorResult:
    """The sparse vector technique (Lyu, Su & Li 2017, Alg. 1; AboveThreshold when max_above=1).

    Reports which of ``queries`` (each of sensitivity ``sensitivity``) exceed ``threshold``,
    halting after ``max_above`` reports. Budget split: ε₁ = ``threshold_share``·ε noises the
    threshold (Lap(Δ/ε₁)), ε₂ = ε − ε₁ the queries (Lap(2cΔ/ε₂), or Lap(cΔ/ε₂) for
    monotonic queries). Default share: the optimum ε₁:ε₂ = 1:(2c)^(2/3) (1:c^(2/3) when
    monotonic). The whole run is ε-DP however many queries it reads; the query values
    themselves are not released (release them with :func:`laplace` at extra cost).
    """
    _positive("epsilon", epsilon)
    _positive("sensitivity", sensitivity)
    if max_above < 1:
        raise ConfigError(f"max_above must be at least 1, got {max_above}")
    c = max_above
    if threshold_share is None:
        ratio = (c if monotonic else 2 * c) ** (2 / 3)
        threshold_share = 1 / (1 + ratio)
    if not 0 < threshold_share < 1:
        raise ConfigError(f"threshold_share must be in (0, 1), got {threshold_share}")
    eps1 = threshold_share * epsilon
    eps2 = epsilon - eps1
    rng = make_rng(seed, secure)
    noisy_threshold = threshold + rng.laplace(0.0, sensitivity / eps1)
    query_scale = (1 if monotonic else 2) * c * sensitivity / eps2
    # Vectorised: noise for every query at once, then halt at the c-th answer above. Noise
    # drawn for queries after the halt is never looked at, so this is the sequential SVT.
    values = np.asarray(queries, dtype=np.float64).reshape(-1)
    hits = np.flatnonzero(
        values + rng.laplace(0.0, query_scale, size=values.shape) >= noisy_threshold
    )[:c]
    above = hits.tolist()
    answered = int(hits[-1]) + 1 if len(above) >= c else len(values)
    return SparseVectorResult(
        above,
        answered,
        eps1,
        eps2,
        PureEvent(epsilon),
        halted=len(above) >= c,
        details={"threshold_scale": sensitivity / eps1, "query_scale": query_scale},
    )
