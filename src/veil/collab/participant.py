"""A collaborative-learning participant: a private local model, a private data shard.

The participant overwrites its local copies of the coordinates it downloads, trains on its own
data (plain SGD, or DP-SGD through :mod:`veil.dp` for record-level privacy), and returns the
change Δw of its flat parameter vector. What it shares of Δw is the algorithm's business
(:mod:`veil.collab.dssgd`, :mod:`veil.collab.fedavg`). Its whole state (weights and both
random generators) saves and loads, so a run resumes exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parameters_to_vector

from veil.core.data import ArrayDataset
from veil.core.errors import ConfigError


@dataclass(frozen=True)
class LocalTraining:
    """How a participant trains between exchanges.

    ``epochs`` local passes over its shard (fractions allowed), mini-batches of ``batch_size``,
    plain SGD at ``lr`` (no momentum, so nothing but the weights carries over). With
    ``dp_sigma`` set, DP-SGD instead (Poisson sampling, clip ``dp_clip``, noise multiplier σ).
    """

    lr: float = 0.1
    batch_size: int = 32
    epochs: float = 1.0
    dp_sigma: float | None = None
    dp_clip: float = 1.0

    def __post_init__(self):
        if self.lr <= 0 or self.batch_size < 1 or self.epochs <= 0:
            raise ConfigError("local lr, batch size and epochs must be positive")
        if self.dp_sigma is not None and (self.dp_sigma <= 0 or self.dp_clip <= 0):
            raise ConfigError("local DP-SGD needs sigma > 0 and clip > 0")

    def steps(self, n: int) -> int:
        """Mini-batch steps per exchange on a shard of ``n`` examples."""
        return max(1, round(self.epochs * n / self.batch_size))

    def sampling_rate(self, n: int) -> float:
        """Poisson rate q of DP-SGD steps on a shard of ``n`` examples."""
        return min(self.batch_size, n) / n

    @staticmethod
    def record_delta(n: int) -> float:
        """δ of the record-level guarantee on a shard of ``n`` examples (below 1/n)."""
        return min(1e-5, 0.5 / n)


def record_level(local: LocalTraining, steps: list[int], sizes: list[int]) -> dict:
    """Record-level (ε, δ) of local DP-SGD, for the participant with the most steps."""
    from veil.dp import Accountant, GaussianEvent

    i = max(range(len(steps)), key=steps.__getitem__)
    n, delta = sizes[i], local.record_delta(sizes[i])
    event = GaussianEvent(local.dp_sigma, local.sampling_rate(n), steps[i])
    return {"record_epsilon": Accountant().add(event).epsilon(delta), "record_delta": delta}


def flat(model: nn.Module) -> np.ndarray:
    """The model's parameters as one float32 vector (the coordinates DSSGD talks about)."""
    with torch.no_grad():
        return parameters_to_vector(model.parameters()).detach().cpu().numpy().astype(np.float32)


def set_flat(model: nn.Module, vector: np.ndarray) -> None:
    """Copy a flat vector into the model's parameters, in place.

    A copy, never a view: ``vector_to_parameters`` on ``torch.from_numpy(vector)`` would make
    the parameters share memory with ``vector``, and training would then change the caller's
    array (the global model, say)."""
    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    if vector.ndim != 1 or vector.size != total:
        raise ValueError(f"expected a flat vector of {total} values, got shape {vector.shape}")
    source = torch.from_numpy(np.asarray(vector, dtype=np.float32))
    with torch.no_grad():
        offset = 0
        for p in params:
            p.copy_(source[offset : offset + p.numel()].view_as(p))
            offset += p.numel()


def overwrite(model: nn.Module, indices: np.ndarray, values: np.ndarray) -> None:
    """Set the flat parameters at ``indices`` to ``values`` (a DSSGD download)."""
    vector = flat(model)
    vector[indices] = values
    set_flat(model, vector)


class Participant:
    """Participant ``pid`` with its own model, data shard and seeded generators."""

    def __init__(
        self, pid: int, model: nn.Module, data: ArrayDataset, local: LocalTraining, seed: int
    ):
        if len(data) == 0:
            raise ConfigError(f"participant {pid} has no training data")
        self.pid, self.model, self.data, self.local = pid, model, data, local
        self.generator = torch.Generator().manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.steps_taken = 0  # local SGD steps so far (for record-level accounting)
        self.residual: np.ndarray | None = None  # change not shared yet (DSSGD residual)

    def receive(self, indices: np.ndarray, values: np.ndarray) -> None:
        """Overwrite the local copies of the downloaded coordinates."""
        overwrite(self.model, indices, values)

    def train(self) -> np.ndarray:
        """Train locally once; return Δw, the change of the flat parameters."""
        before = flat(self.model)
        if self.local.dp_sigma is None:
            self._sgd()
        else:
            self._dp_sgd()
        return flat(self.model) - before

    def _sgd(self) -> None:
        model, n = self.model.train(), len(self.data)
        opt = torch.optim.SGD(model.parameters(), lr=self.local.lr)
        steps, order, pos = self.local.steps(n), torch.randperm(n, generator=self.generator), 0
        for _ in range(steps):
            if pos >= n:
                order, pos = torch.randperm(n, generator=self.generator), 0
            x, y = self.data.batch(order[pos : pos + self.local.batch_size])
            pos += self.local.batch_size
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        self.steps_taken += steps

    def _dp_sgd(self) -> None:
        from veil import dp

        n = len(self.data)
        cfg = dp.DPConfig(
            epsilon=None,
            sigma=self.local.dp_sigma,
            clip=self.local.dp_clip,
            epochs=self.local.epochs,
            batch_size=min(self.local.batch_size, n),
            lr=self.local.lr,
            momentum=0.0,
            delta=self.local.record_delta(n),
            noise_seed=int(self.rng.integers(2**62)),
            seed=int(self.rng.integers(2**31)),
        )
        # the run accounts for all exchanges at once (record_level): none per exchange
        result = dp.train(self.model, self.data, cfg, device="cpu", quiet=True, account=False)
        self.steps_taken += result.steps

    # --- state ----------------------------------------------------------------------------

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        """Arrays and JSON facts that restore this participant exactly."""
        arrays = {
            f"p{self.pid}.weights": flat(self.model),
            f"p{self.pid}.torch_rng": self.generator.get_state().numpy(),
        }
        if self.residual is not None:
            arrays[f"p{self.pid}.residual"] = self.residual
        meta = {"rng": self.rng.bit_generator.state, "steps": self.steps_taken}
        return arrays, meta

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        set_flat(self.model, arrays[f"p{self.pid}.weights"])
        self.generator.set_state(torch.from_numpy(arrays[f"p{self.pid}.torch_rng"].copy()))
        self.rng.bit_generator.state = meta["rng"]
        self.steps_taken = int(meta["steps"])
        self.residual = arrays.get(f"p{self.pid}.residual")
