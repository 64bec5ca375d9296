"""Distributed Selective SGD (Shokri & Shmatikov, CCS 2015), engine-free.

One exchange of participant *i*: download a fraction θd of the global parameters (chosen by
the server's download policy) and overwrite the local copies; train locally; compute Δw;
select at most θu·|w| coordinates (largest |Δ|, random above τ, or the differentially private
sparse-vector selection); truncate to [−γ, γ]; upload them as a :class:`SparseUpdate` naming
the version they were based on. The runners (in-process, Flower) only move these messages.

Privacy: with ``dp_epsilon`` set, every upload is ε_u-DP with respect to the uploading
participant's *whole* data set (truncation bounds what any data can change). ε_u is
calibrated so that all of a participant's uploads, composed with the PLD accountant of
:mod:`veil.dp`, stay within ``dp_epsilon`` at ``delta``: one figure for the whole model and
the whole training. The paper's own figure, ε_u divided by the number of parameters shared
per upload ("per parameter"), is reported beside it and labelled as such; it is not a
guarantee. Local DP-SGD (record-level) is the other option, accounted the usual way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from veil.collab.participant import Participant
from veil.collab.policies import (
    DOWNLOAD_POLICIES,
    UPLOAD_POLICIES,
    count_for,
    private_selection,
    select_upload,
    truncate,
)
from veil.collab.server import Download, ParameterServer
from veil.collab.updates import Limits, SparseUpdate
from veil.core.errors import ConfigError

ORDERS = ("round-robin", "random", "async")


@dataclass(frozen=True)
class DSSGDConfig:
    """What DSSGD shares, and how (defaults: the paper's MNIST settings where it gives them).

    ``theta_up``/``theta_down``: fractions θu, θd of the parameters uploaded/downloaded per
    exchange; ``upload``/``download``: the selection policies of :mod:`veil.collab.policies`;
    ``tau``: threshold τ for ``random`` and ``svt``; ``gamma``: bound γ on shared values
    (None: no truncation; required with DP); ``decay``: of the server's counters;
    ``staleness``: most versions an update may lag (None: any); ``dp_epsilon``/``delta``: the
    whole-run budget per participant for the private selection; ``residual``: keep and
    re-offer what was not shared (error feedback; an extension, off as in the paper).
    """

    theta_up: float = 0.1
    theta_down: float = 0.1
    upload: str = "largest"
    download: str = "largest"
    tau: float = 0.0
    gamma: float | None = None
    decay: float = 1.0
    staleness: int | None = None
    dp_epsilon: float | None = None
    delta: float = 1e-5
    residual: bool = False

    def __post_init__(self):
        count_for(self.theta_up, 1), count_for(self.theta_down, 1)
        if self.upload not in UPLOAD_POLICIES:
            raise ConfigError(
                f"unknown upload policy {self.upload!r}; use one of {', '.join(UPLOAD_POLICIES)}"
            )
        if self.download not in DOWNLOAD_POLICIES:
            raise ConfigError(
                f"unknown download policy {self.download!r}; "
                f"use one of {', '.join(DOWNLOAD_POLICIES)}"
            )
        if self.gamma is not None and not self.gamma > 0:
            raise ConfigError(f"the bound gamma must be > 0, got {self.gamma}")
        if self.dp_epsilon is not None:
            if not self.dp_epsilon > 0:
                raise ConfigError(f"dp_epsilon must be > 0, got {self.dp_epsilon}")
            if self.gamma is None:
                raise ConfigError("DSSGD with DP needs a bound gamma on the shared values")
        if self.staleness is not None and self.staleness < 0:
            raise ConfigError(f"staleness bound must be >= 0, got {self.staleness}")

    @property
    def private(self) -> bool:
        return self.dp_epsilon is not None

    def limits(self, size: int) -> Limits:
        """What the server accepts from participants under this configuration."""
        return Limits(size, count_for(self.theta_up, size), self.gamma, self.staleness)

    def server(self, params: np.ndarray) -> ParameterServer:
        return ParameterServer(params, self.limits(params.size), self.decay)


def upload_epsilon(cfg: DSSGDConfig, uploads: int) -> float:
    """ε_u per upload such that ``uploads`` of them compose (PLD) to ``cfg.dp_epsilon``."""
    from veil.dp import Accountant, PureEvent

    def total(eps_u: float) -> float:
        return Accountant().add(PureEvent(eps_u, uploads)).epsilon(cfg.delta)

    lo, hi = 1e-9, cfg.dp_epsilon  # one upload at the whole budget is the most it can take
    if total(hi) <= cfg.dp_epsilon:
        return hi
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if total(mid) <= cfg.dp_epsilon else (lo, mid)
    return lo


def begin(
    server: ParameterServer, participant: Participant, cfg: DSSGDConfig, eps_u: float | None
) -> SparseUpdate:
    """Download, train, select: the participant's side of one exchange (nothing applied yet)."""
    return exchange(participant, server.download(cfg.theta_down, cfg.download), cfg, eps_u)


def exchange(
    participant: Participant, download: Download, cfg: DSSGDConfig, eps_u: float | None
) -> SparseUpdate:
    """Overwrite the downloaded coordinates, train, and select what to upload."""
    participant.receive(download.indices, download.values)
    return share(participant, participant.train(), download.version, cfg, eps_u)


def round_order(order: str, n: int, rng: np.random.Generator):
    """Who goes when in a sequential round: 0..n-1, or a fresh permutation."""
    return range(n) if order == "round-robin" else (int(i) for i in rng.permutation(n))


def share(
    participant: Participant,
    delta: np.ndarray,
    version: int,
    cfg: DSSGDConfig,
    eps_u: float | None,
) -> SparseUpdate:
    """The sparse update a participant uploads for local change ``delta``.

    With ``cfg.residual`` the participant first adds what it has not shared of earlier
    changes, and keeps what it does not share now (error feedback, Strom 2015; not in
    Shokri & Shmatikov): nothing it learns is dropped for good, only delayed.
    """
    if cfg.residual:
        delta = delta + participant.residual if participant.residual is not None else delta
    update = _select(participant, delta, version, cfg, eps_u)
    if cfg.residual:
        left = delta.astype(np.float32).copy()
        left[update.indices] -= update.values
        participant.residual = left
    return update


def _select(participant, delta, version, cfg: DSSGDConfig, eps_u) -> SparseUpdate:
    k = count_for(cfg.theta_up, delta.size)
    n = len(participant.data)
    if cfg.private:
        sel = private_selection(
            delta, k, epsilon=eps_u, bound=cfg.gamma, tau=cfg.tau, rng=participant.rng
        )
        return SparseUpdate(participant.pid, sel.indices, sel.values, version, n)
    if k >= delta.size:
        return SparseUpdate.dense(participant.pid, truncate(delta, cfg.gamma), version, n)
    idx = select_upload(delta, k, cfg.upload, cfg.tau, participant.rng)
    values = truncate(delta[idx], cfg.gamma).astype(np.float32)
    return SparseUpdate(participant.pid, idx, values, version, n)


def privacy_numbers(cfg: DSSGDConfig, uploads: int, eps_u: float, size: int) -> dict:
    """The whole-run ε per participant, ε per upload, and the paper's per-parameter figure."""
    from veil.dp import Accountant, PureEvent

    k = count_for(cfg.theta_up, size)
    whole = Accountant().add(PureEvent(eps_u, uploads)).epsilon(cfg.delta) if uploads else 0.0
    return {
        "epsilon": whole,
        "delta": cfg.delta,
        "epsilon_per_upload": eps_u,
        "epsilon_per_parameter_paper": eps_u / k,
        "uploads_per_participant": uploads,
    }
