"""DSSGD and FedAvg messages as Flower records (NumPy arrays only; nothing is pickled).

A download travels as ``ArrayRecord`` ``download`` (``indices`` int64, ``values`` float32)
plus ``ConfigRecord`` ``meta`` (``version``, ``round``). An update travels as ``ArrayRecord``
``update`` (``indices``: Elias-Fano bytes, empty for a dense update; ``values`` float32)
plus ``meta`` (``base_version``, ``count``, ``n_samples``, ``pid``, and the sender's local
facts). :func:`read_update` checks the shape of what arrives; the parameter server checks
the rest (:func:`veil.collab.updates.check_update`).
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from veil.collab.updates import (
    INDEX_DTYPE,
    VALUE_DTYPE,
    SparseUpdate,
    UpdateRejected,
    decode_indices,
    encode_indices,
)


def download_content(indices, values, version: int, round_: int, **facts) -> RecordDict:
    arrays = ArrayRecord({"indices": Array(indices), "values": Array(values)})
    meta = ConfigRecord({"version": int(version), "round": int(round_), **facts})
    return RecordDict({"download": arrays, "meta": meta})


def read_download(content: RecordDict) -> tuple[np.ndarray, np.ndarray, int, dict]:
    arrays, meta = content["download"], content["meta"]
    return arrays["indices"].numpy(), arrays["values"].numpy(), int(meta["version"]), dict(meta)


def update_content(update: SparseUpdate, size: int, **facts) -> RecordDict:
    dense = update.indices.size == size
    coded = np.zeros(0, np.uint8) if dense else encode_indices(update.indices, size)
    arrays = ArrayRecord({"indices": Array(coded), "values": Array(update.values)})
    meta = ConfigRecord(
        {
            "base_version": int(update.base_version),
            "count": int(update.indices.size),
            "n_samples": int(update.n_samples),
            "pid": int(update.participant),
            **facts,
        }
    )
    return RecordDict({"update": arrays, "meta": meta})


def read_update(content: RecordDict, size: int) -> tuple[SparseUpdate, dict]:
    """The update in a reply, and its meta; :class:`UpdateRejected` if it is malformed."""
    try:
        arrays, meta = content["update"], dict(content["meta"])
        coded, values = arrays["indices"].numpy(), arrays["values"].numpy()
        count, pid = int(meta["count"]), int(meta["pid"])
        base, n = int(meta["base_version"]), int(meta["n_samples"])
    except (KeyError, TypeError, ValueError) as e:
        raise UpdateRejected(f"malformed update message: {e}", "malformed") from e
    who = f"update from participant {pid}"
    if count == size and coded.size == 0:
        indices = np.arange(size, dtype=INDEX_DTYPE)
    else:
        indices = decode_indices(coded, size, count, who)
    if values.dtype != VALUE_DTYPE:
        raise UpdateRejected(f"{who}: values must be float32, got {values.dtype}", "type")
    return SparseUpdate(pid, indices.astype(INDEX_DTYPE), values, base, n), meta
