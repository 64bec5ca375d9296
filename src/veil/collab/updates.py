"""Sparse updates, the one message DSSGD participants send, and the server's checks on them.

An update names the coordinates of the flat parameter vector it changes, the change for each,
and the global version its participant downloaded before training. The server accepts an
update whole or not at all; :func:`check_update` says why it refuses one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from veil.core.errors import VeilError

INDEX_DTYPE = np.int64
VALUE_DTYPE = np.float32


class UpdateRejected(VeilError):
    """A participant's update that the server refused; nothing of it was applied.

    ``reason`` is a short key for counting (``stale``, ``duplicate``, ``non-finite``, ...).
    """

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class SparseUpdate:
    """Adds ``values`` at coordinates ``indices``; computed from global version ``base_version``."""

    participant: int
    indices: np.ndarray
    values: np.ndarray
    base_version: int
    n_samples: int = 0

    @classmethod
    def dense(cls, participant: int, delta: np.ndarray, base_version: int, n_samples: int = 0):
        """Every coordinate: the update of θu = 100%."""
        idx = np.arange(delta.size, dtype=INDEX_DTYPE)
        return cls(participant, idx, delta.astype(VALUE_DTYPE), base_version, n_samples)

    def nbytes(self, size: int) -> int:
        """Bytes on the wire for a model of ``size`` coordinates: see :func:`wire_bytes`."""
        return wire_bytes(self.indices, size)


@dataclass(frozen=True)
class Limits:
    """What the server accepts: the model size, most coordinates, value bound, staleness."""

    size: int
    max_count: int
    bound: float | None = None  # γ: |value| must not exceed it
    staleness: int | None = None  # most versions an update may lag behind the server


def check_update(update: SparseUpdate, limits: Limits, version: int) -> None:
    """Raise :class:`UpdateRejected` with the reason if ``update`` is malformed or too stale."""
    who = f"update from participant {update.participant}"
    idx, val = update.indices, update.values
    if not isinstance(idx, np.ndarray) or not isinstance(val, np.ndarray):
        raise UpdateRejected(f"{who}: indices and values must be arrays", "type")
    if idx.dtype != INDEX_DTYPE or val.dtype != VALUE_DTYPE:
        raise UpdateRejected(
            f"{who}: expected int64 indices and float32 values, got {idx.dtype} and {val.dtype}",
            "type",
        )
    if idx.ndim != 1 or val.ndim != 1 or idx.shape != val.shape:
        raise UpdateRejected(
            f"{who}: indices and values must be 1-D and of one length, "
            f"got shapes {idx.shape} and {val.shape}",
            "shape",
        )
    if idx.size > limits.max_count:
        raise UpdateRejected(
            f"{who}: {idx.size} coordinates, more than the {limits.max_count} allowed", "count"
        )
    if idx.size and (idx.min() < 0 or idx.max() >= limits.size):
        raise UpdateRejected(f"{who}: index out of range [0, {limits.size})", "range")
    if np.unique(idx).size != idx.size:
        raise UpdateRejected(f"{who}: duplicate indices", "duplicate")
    if not np.isfinite(val).all():
        raise UpdateRejected(f"{who}: NaN or infinite values", "non-finite")
    if limits.bound is not None and idx.size and np.abs(val).max() > limits.bound * (1 + 1e-6):
        raise UpdateRejected(f"{who}: a value exceeds the bound γ = {limits.bound:g}", "bound")
    _check_version(who, update.base_version, version, limits.staleness)


def _check_version(who: str, base: int, version: int, staleness: int | None) -> None:
    if not isinstance(base, int | np.integer) or base < 0 or base > version:
        raise UpdateRejected(
            f"{who}: base version {base} is not one the server has issued", "version"
        )
    if staleness is not None and version - base > staleness:
        raise UpdateRejected(
            f"{who}: based on version {base}, {version - base} behind the server "
            f"(staleness bound {staleness})",
            "stale",
        )


# --- wire encoding of the indices ------------------------------------------------------------
# Elias-Fano: k sorted indices below n in k·(2 + ⌊log2(n/k)⌋) bits, about 5 bits each at
# θ = 10% (int64 would take 64). Values travel as float32. Decoding checks everything it reads.


def _low_bits(n: int, k: int) -> int:
    return max(0, int(np.floor(np.log2(n / k)))) if k else 0


def encode_indices(indices: np.ndarray, n: int) -> np.ndarray:
    """Sorted, distinct ``indices`` in [0, n) as Elias-Fano bytes (uint8)."""
    idx = np.asarray(indices, dtype=np.int64)
    k = idx.size
    if k == 0:
        return np.zeros(0, np.uint8)
    low_bits = _low_bits(n, k)
    high = idx >> low_bits
    upper = np.zeros(k + int(high[-1]) + 1, np.uint8)
    upper[high + np.arange(k)] = 1
    low = ((idx[:, None] >> np.arange(low_bits)) & 1).astype(np.uint8).reshape(-1)
    return np.concatenate([np.packbits(low), np.packbits(upper)])


def decode_indices(blob: np.ndarray, n: int, k: int, who: str = "update") -> np.ndarray:
    """The ``k`` indices encoded by :func:`encode_indices` for size ``n``; refuses bad bytes."""
    if k == 0:
        return np.zeros(0, np.int64)
    if not 0 < k <= n or blob.dtype != np.uint8 or blob.ndim != 1:
        raise UpdateRejected(f"{who}: malformed index encoding", "encoding")
    low_bits = _low_bits(n, k)
    low_bytes = -(-k * low_bits // 8)
    if blob.size < low_bytes:
        raise UpdateRejected(f"{who}: index encoding too short", "encoding")
    low = np.unpackbits(blob[:low_bytes])[: k * low_bits].reshape(k, low_bits).astype(np.int64)
    ones = np.flatnonzero(np.unpackbits(blob[low_bytes:]))
    if ones.size != k:
        raise UpdateRejected(
            f"{who}: index encoding holds {ones.size} entries, not {k}", "encoding"
        )
    high = ones - np.arange(k)
    return (high << low_bits) | (low << np.arange(low_bits)).sum(axis=1)


HEADER_BYTES = 16  # version (8), count (4), participant (4)


def wire_bytes(indices: np.ndarray, size: int) -> int:
    """Bytes of a sparse message: header, float32 values, Elias-Fano indices (none when all
    ``size`` coordinates are sent, in order)."""
    k = int(indices.size)
    if k == size:
        return dense_bytes(size)
    return HEADER_BYTES + 4 * k + encode_indices(indices, size).size


def dense_bytes(size: int) -> int:
    """Bytes of a dense message of ``size`` float32 values (the baseline of every ratio)."""
    return HEADER_BYTES + 4 * size
