"""DSSGD's parameter server: global parameters, sparse updates in, chosen coordinates out.

The server holds the flat global parameter vector and, per coordinate, what the download
policies rank by: a decayed update count (``frequency``), a decayed sum of |applied change|
(``largest``) and the version of the last update (``recent``). Each accepted update bumps the
version by one. The whole state saves to one safetensors file plus a JSON header, written
atomically, so a server killed mid-run resumes from its last checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from veil.collab.policies import count_for, download_indices
from veil.collab.updates import Limits, SparseUpdate, UpdateRejected, check_update, wire_bytes
from veil.core.errors import ConfigError

CHECKPOINT_FORMAT = "veil-dssgd-server/1"


@dataclass
class Download:
    """Coordinates of the global parameters, their values, and the version they come from."""

    indices: np.ndarray
    values: np.ndarray
    version: int
    size: int

    def nbytes(self) -> int:
        return wire_bytes(self.indices, self.size)


@dataclass
class ServerStats:
    """What happened to the updates sent in: accepted, and rejected by reason."""

    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1


class ParameterServer:
    """Global parameters of a DSSGD run; applies checked sparse updates one at a time.

    ``decay`` (in (0, 1]) multiplies the per-coordinate counters at each accepted update, so
    the download policies favour recent activity; 1 keeps plain totals.
    """

    def __init__(self, params: np.ndarray, limits: Limits, decay: float = 1.0):
        if not 0 < decay <= 1:
            raise ConfigError(f"counter decay must be in (0, 1], got {decay}")
        if params.ndim != 1 or params.size != limits.size:
            raise ConfigError(f"server parameters must be a flat vector of {limits.size} values")
        self.params = params.astype(np.float32).copy()
        self.limits = limits
        self.decay = decay
        self.version = 0
        self.counts = np.zeros(params.size, np.float64)
        self.change = np.zeros(params.size, np.float64)
        self.last = np.zeros(params.size, np.int64)
        self.stats = ServerStats()

    def apply(self, update: SparseUpdate) -> None:
        """Check ``update`` and add it to the global parameters; refuse it whole if bad."""
        try:
            check_update(update, self.limits, self.version)
        except UpdateRejected as e:
            self.stats.reject(e.reason)
            raise
        idx = update.indices
        self.params[idx] += update.values
        if self.decay < 1:
            self.counts *= self.decay
            self.change *= self.decay
        self.counts[idx] += 1
        self.change[idx] += np.abs(update.values)
        self.version += 1
        self.last[idx] = self.version
        self.stats.accepted += 1

    def download(self, fraction: float = 1.0, policy: str = "largest") -> Download:
        """A fraction θd of the global parameters, chosen by ``policy`` (all of them at θd=1)."""
        k = count_for(fraction, self.params.size)
        if k >= self.params.size:
            idx = np.arange(self.params.size, dtype=np.int64)
        else:
            scores = {"largest": self.change, "frequency": self.counts, "recent": self.last}
            idx = download_indices(scores, k, policy)
        return Download(idx, self.params[idx].copy(), self.version, self.params.size)

    # --- checkpoints ---------------------------------------------------------------------

    def state(self, prefix: str = "") -> tuple[dict[str, np.ndarray], dict]:
        """Arrays (names under ``prefix``, so they can share a file with others) and JSON
        facts that restore this server exactly (:meth:`from_state`)."""
        meta = {
            "version": self.version,
            "decay": self.decay,
            "limits": self.limits.__dict__,
            "stats": self.stats.__dict__,
        }
        arrays = {
            "params": self.params,
            "counts": self.counts,
            "change": self.change,
            "last": self.last,
        }
        return {prefix + k: v for k, v in arrays.items()}, meta

    @classmethod
    def from_state(
        cls, arrays: dict[str, np.ndarray], meta: dict, prefix: str = ""
    ) -> ParameterServer:
        arrays = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
        server = cls(arrays["params"], Limits(**meta["limits"]), meta["decay"])
        server.version = int(meta["version"])
        server.counts, server.change = arrays["counts"].copy(), arrays["change"].copy()
        server.last = arrays["last"].copy()
        server.stats = ServerStats(**meta["stats"])
        return server

    def save(self, path: str | Path) -> None:
        """Write the whole server state to ``path`` atomically (safetensors + JSON)."""
        from veil.core.io import save_arrays

        save_arrays(path, *self.state(), CHECKPOINT_FORMAT)

    @classmethod
    def load(cls, path: str | Path) -> ParameterServer:
        """A server from a checkpoint written by :meth:`save`."""
        from veil.core.io import load_arrays

        return cls.from_state(*load_arrays(path, CHECKPOINT_FORMAT))
