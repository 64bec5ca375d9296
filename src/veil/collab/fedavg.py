"""Federated averaging (McMahan et al. 2017), with optional central DP (McMahan et al. 2018).

Each round, the sampled clients start from the global model, train locally, and send Δw.
Without DP the server adds the average of the Δw weighted by each client's sample count.
With DP (``dp_sigma``) each Δw is clipped to L2 norm ``clip``, the clipped sum gets Gaussian
noise of standard deviation σ·clip, and it is divided by the *expected* number of clients,
so one client's whole data changes the result by at most clip/(qN): client-level
(σ, q, rounds) Gaussian accounting through :mod:`veil.dp`. Clients are then Poisson-sampled
at rate ``fraction`` so the accounting matches the sampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from veil.core.errors import ConfigError


@dataclass(frozen=True)
class FedAvgConfig:
    """``fraction`` of clients per round; ``dp_sigma``/``clip``/``delta``: central DP;
    ``server_lr``: step on the averaged update (1 is plain FedAvg); ``secure``: aggregate
    through Flower's SecAgg+ workflow, so the server sees only the sum (Flower engine)."""

    fraction: float = 1.0
    dp_sigma: float | None = None
    clip: float = 1.0
    delta: float = 1e-5
    server_lr: float = 1.0
    secure: bool = False

    def __post_init__(self):
        if self.secure and (self.dp_sigma is not None or self.fraction < 1 or self.server_lr != 1):
            raise ConfigError(
                "secure aggregation (Flower's SecAgg+) runs plain FedAvg over every client: "
                "no central DP, client fraction or server learning rate with it yet"
            )
        if not 0 < self.fraction <= 1:
            raise ConfigError(f"client fraction must be in (0, 1], got {self.fraction}")
        if self.dp_sigma is not None and not self.dp_sigma > 0:
            raise ConfigError(f"dp_sigma must be > 0, got {self.dp_sigma}")
        if not self.clip > 0 or not self.server_lr > 0:
            raise ConfigError("clip and server_lr must be > 0")

    @property
    def private(self) -> bool:
        return self.dp_sigma is not None


def sample_clients(n: int, cfg: FedAvgConfig, rng: np.random.Generator) -> list[int]:
    """This round's clients: Poisson at rate ``fraction`` under DP, else ⌈fraction·n⌉ of them."""
    if cfg.private:
        return np.flatnonzero(rng.random(n) < cfg.fraction).tolist()
    k = max(1, int(np.ceil(cfg.fraction * n)))
    return sorted(rng.choice(n, size=k, replace=False).tolist())


def aggregate(deltas: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """The weighted mean of the clients' updates (weights: their sample counts)."""
    if not deltas:
        raise ConfigError("no client update to aggregate")
    w = np.asarray(weights, dtype=np.float64)
    if (w < 0).any() or w.sum() <= 0:
        raise ConfigError("client weights must be non-negative with a positive sum")
    return (np.tensordot(w / w.sum(), np.stack(deltas), axes=1)).astype(np.float32)


def clip_update(delta: np.ndarray, clip: float) -> np.ndarray:
    """``delta`` scaled down to L2 norm at most ``clip``."""
    norm = float(np.linalg.norm(delta))
    return delta if norm <= clip else (delta * (clip / norm)).astype(np.float32)


def private_aggregate(
    deltas: list[np.ndarray],
    size: int,
    n_clients: int,
    cfg: FedAvgConfig,
    rng: np.random.Generator,
) -> np.ndarray:
    """Clipped sum plus N(0, (σ·clip)²) noise, over the expected client count q·N."""
    total = np.zeros(size, np.float64)
    for d in deltas:
        total += clip_update(d, cfg.clip)
    total += rng.normal(0.0, cfg.dp_sigma * cfg.clip, size=size)
    return (total / (cfg.fraction * n_clients)).astype(np.float32)


def next_global(
    global_params: np.ndarray,
    deltas: list[np.ndarray],
    weights: list[float],
    n_clients: int,
    cfg: FedAvgConfig,
    rng: np.random.Generator,
) -> np.ndarray:
    """The global model after a round: plus ``server_lr`` times the sample-weighted mean of
    the updates (or, under DP, the noisy clipped aggregate); unchanged if none arrived."""
    if cfg.private:
        step = private_aggregate(deltas, global_params.size, n_clients, cfg, rng)
    elif deltas:
        step = aggregate(deltas, weights)
    else:
        return global_params
    return global_params + cfg.server_lr * step


def privacy_numbers(cfg: FedAvgConfig, rounds: int) -> dict:
    """Client-level (ε, δ) of ``rounds`` DP-FedAvg rounds (PLD accountant)."""
    from veil.dp import Accountant, GaussianEvent

    eps = Accountant().add(GaussianEvent(cfg.dp_sigma, cfg.fraction, rounds)).epsilon(cfg.delta)
    return {"epsilon": eps, "delta": cfg.delta, "sigma": cfg.dp_sigma, "q": cfg.fraction}
