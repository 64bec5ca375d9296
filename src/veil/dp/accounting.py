"""Privacy accounting on Google's ``dp-accounting``: PLD by default (tight), RDP as a cross-check.

Every mechanism in veil returns an accounting event; an :class:`Accountant` composes any mix
of them (Poisson-subsampled Gaussian steps, Laplace releases, sparse-vector runs) into one
(ε, δ). The PLD accountant with pessimistic discretisation gives an upper bound on ε that is
close to exact; RDP gives a looser but independent upper bound. GDP/CLT approximations are
never reported: they are not upper bounds.

Measured against Opacus' PRV accountant (δ = 1e-5): σ=4.45, q=0.045, 673 steps: PLD 1.006,
PRV 1.016; σ=0.977, q=0.045, 673: 8.196 vs 8.206; σ=1.1, q=0.01, 6000: 3.900 vs 3.910;
σ=3.0, q=0.082, 875: 3.606 vs 3.616.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

from veil.core.errors import ConfigError

ACCOUNTANTS = ("pld", "rdp")
PLD_INTERVAL = 1e-4  # value discretisation of the PLD; smaller is tighter and slower
SIGMA_MAX = 1000.0  # beyond this noise multiplier, training learns nothing: refuse


@dataclass(frozen=True)
class GaussianEvent:
    """``count`` runs of the Gaussian mechanism with noise multiplier ``sigma`` (std/sensitivity),
    each on a Poisson sample of rate ``q`` (q=1: no subsampling)."""

    sigma: float
    q: float = 1.0
    count: int = 1

    def __post_init__(self):
        _positive("sigma", self.sigma)
        if not 0 < self.q <= 1:
            raise ConfigError(f"sampling rate q must be in (0, 1], got {self.q}")
        _count(self.count)


@dataclass(frozen=True)
class LaplaceEvent:
    """``count`` runs of the Laplace mechanism with scale ``b`` (per unit sensitivity):
    each is (1/b)-DP."""

    b: float
    count: int = 1

    def __post_init__(self):
        _positive("Laplace scale b", self.b)
        _count(self.count)


@dataclass(frozen=True)
class PureEvent:
    """``count`` runs of any ε-DP mechanism (e.g. a whole sparse-vector run)."""

    epsilon: float
    count: int = 1

    def __post_init__(self):
        _positive("epsilon", self.epsilon)
        _count(self.count)


Event = GaussianEvent | LaplaceEvent | PureEvent


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive finite number, got {value}")


def _count(count: int) -> None:
    if not isinstance(count, int) or count < 0:
        raise ConfigError(f"event count must be a non-negative integer, got {count}")


def _check_delta(delta: float) -> None:
    if not 0 < delta < 1:
        raise ConfigError(f"delta must be in (0, 1), got {delta}")


def _pld(event: Event, interval: float = PLD_INTERVAL):
    from dp_accounting.pld import common
    from dp_accounting.pld import privacy_loss_distribution as pld

    if isinstance(event, GaussianEvent):
        single = pld.from_gaussian_mechanism(
            event.sigma, sampling_prob=event.q, value_discretization_interval=interval
        )
    elif isinstance(event, LaplaceEvent):
        single = pld.from_laplace_mechanism(event.b, value_discretization_interval=interval)
    else:
        params = common.DifferentialPrivacyParameters(event.epsilon, 0.0)
        single = pld.from_privacy_parameters(params, value_discretization_interval=interval)
    return single.self_compose(event.count) if event.count != 1 else single


def _rdp_event(event: Event):
    import dp_accounting as dpa

    if isinstance(event, GaussianEvent):
        one = dpa.GaussianDpEvent(event.sigma)
        one = one if event.q == 1 else dpa.PoissonSampledDpEvent(event.q, one)
    elif isinstance(event, LaplaceEvent):
        one = dpa.LaplaceDpEvent(event.b)
    else:  # ε-DP implies (ε²/2)-zCDP (Bun & Steinke 2016), which RDP composes
        one = dpa.ZCDpEvent(event.epsilon**2 / 2)
    return dpa.SelfComposedDpEvent(one, event.count)


class Accountant:
    """Composes events; answers ε for a δ (or δ for an ε) with the PLD or RDP accountant.

    Example::

        acc = Accountant()
        acc.add(GaussianEvent(sigma=1.1, q=0.01, count=6000))
        acc.add(PureEvent(epsilon=0.1))      # a sparse-vector run
        acc.epsilon(1e-5)                    # one ε for the whole training
    """

    def __init__(self, kind: str = "pld", interval: float = PLD_INTERVAL):
        if kind not in ACCOUNTANTS:
            raise ConfigError(f"unknown accountant {kind!r}; use one of {', '.join(ACCOUNTANTS)}")
        self.kind, self.interval = kind, interval
        self.events: list[Event] = []

    def add(self, event: Event) -> Accountant:
        self.events.append(event)
        return self

    def extend(self, events: Iterable[Event]) -> Accountant:
        for e in events:
            self.add(e)
        return self

    def epsilon(self, delta: float) -> float:
        """The smallest ε this accountant can certify at ``delta`` for all events so far."""
        _check_delta(delta)
        return self._ask("get_epsilon_for_delta", "get_epsilon", delta)

    def delta(self, epsilon: float) -> float:
        """The δ this accountant certifies at ``epsilon``."""
        _positive("epsilon", epsilon)
        return self._ask("get_delta_for_epsilon", "get_delta", epsilon)

    def _ask(self, pld_method: str, rdp_method: str, value: float) -> float:
        """Compose the events once and ask the composed PLD or RDP accountant."""
        events = [e for e in self.events if e.count > 0]
        if not events:
            return 0.0
        if self.kind == "pld":
            return float(getattr(self._composed_pld(events, self.interval), pld_method)(value))
        return float(getattr(self._rdp(events), rdp_method)(value))

    @staticmethod
    def _composed_pld(events, interval):
        total = _pld(events[0], interval)
        for e in events[1:]:
            total = total.compose(_pld(e, interval))
        return total

    @staticmethod
    def _rdp(events):
        import logging

        from dp_accounting.rdp import rdp_privacy_accountant as rdp

        # orders whose series does not converge are dropped (still an upper bound); say nothing
        logging.getLogger("absl").setLevel(logging.ERROR)
        acc = rdp.RdpAccountant()
        for e in events:
            acc.compose(_rdp_event(e))
        return acc


def epsilon_curve(
    sigma: float, q: float, steps: list[int], delta: float, accountant: str = "pld"
) -> list[float]:
    """ε after each number of ``steps`` (ascending) of one DP-SGD run, building the
    single-step PLD once (the curve costs about one ε computation, not one per point)."""
    if accountant != "pld":
        return [epsilon(sigma, q, t, delta, accountant) for t in steps]
    _check_delta(delta)
    single = _pld(GaussianEvent(sigma, q))
    return [float(single.self_compose(t).get_epsilon_for_delta(delta)) for t in steps]


def epsilon(sigma: float, q: float, steps: int, delta: float, accountant: str = "pld") -> float:
    """ε of ``steps`` DP-SGD steps with noise multiplier ``sigma`` and Poisson rate ``q``."""
    return Accountant(accountant).add(GaussianEvent(sigma, q, steps)).epsilon(delta)


def calibrate_sigma(
    target_epsilon: float,
    q: float,
    steps: int,
    delta: float,
    accountant: str = "pld",
    tolerance: float = 0.005,
) -> float:
    """The smallest noise multiplier whose ε (at ``delta``) is at most ``target_epsilon``.

    Bisection on σ, first with a coarse PLD (10x faster; still an upper bound, so its σ is
    safe), then refined with the fine one. The returned σ always satisfies ε(σ) ≤ target,
    within ``tolerance`` relative of the smallest such σ.
    """
    _positive("target epsilon", target_epsilon)
    _check_delta(delta)
    if steps < 1:
        raise ConfigError(f"steps must be at least 1, got {steps}")

    def eps(s: float, interval: float = PLD_INTERVAL) -> float:
        return Accountant(accountant, interval).add(GaussianEvent(s, q, steps)).epsilon(delta)

    coarse = 10 * PLD_INTERVAL
    if eps(SIGMA_MAX, coarse) > target_epsilon:
        raise ConfigError(
            f"ε={target_epsilon} at δ={delta} over {steps} steps with q={q} needs a noise "
            f"multiplier above {SIGMA_MAX:g}, which learns nothing: raise ε, take fewer steps "
            "or larger batches"
        )
    lo, hi = 0.0, 1.0
    while eps(hi, coarse) > target_epsilon:
        lo, hi = hi, hi * 2
    hi = _bisect(lambda s: eps(s, coarse) > target_epsilon, lo, hi, tolerance)
    # the fine accountant is tighter: look for a smaller σ just below the coarse answer
    return _bisect(lambda s: eps(s) > target_epsilon, hi * (1 - 4 * tolerance), hi, tolerance)


def _bisect(too_small, lo: float, hi: float, tolerance: float) -> float:
    """The smallest σ in [lo, hi] (to ``tolerance``) that is not ``too_small``; hi must not be."""
    if lo > 0 and not too_small(lo):
        return lo
    while hi - lo > tolerance * hi:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if too_small(mid) else (lo, mid)
    return hi


def check_delta_for(delta: float, n: int) -> None:
    """Warn when δ is not below 1/n: such a δ allows leaking a whole record."""
    _check_delta(delta)
    if n > 0 and delta >= 1 / n:
        warnings.warn(
            f"delta={delta:g} is not below 1/n = {1 / n:.3g} for n={n} records; "
            "choose delta well below 1/n (e.g. 1/(10 n))",
            stacklevel=3,
        )
