"""Flower records for DSSGD: round trips, and malformed replies refused with a reason."""

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.collab.flower.messages import (
    download_content,
    read_download,
    read_update,
    update_content,
)
from veil.collab.updates import SparseUpdate, UpdateRejected

SIZE = 1000


@given(st.sets(st.integers(0, SIZE - 1), min_size=1, max_size=200), st.integers(0, 50))
@settings(max_examples=50, deadline=None)
def test_update_round_trips(indices, version):
    idx = np.array(sorted(indices), np.int64)
    values = np.linspace(-1, 1, idx.size).astype(np.float32)
    update = SparseUpdate(2, idx, values, version, 77)
    back, meta = read_update(update_content(update, SIZE, accuracy=0.5), SIZE)
    assert np.array_equal(back.indices, idx) and np.array_equal(back.values, values)
    assert (back.participant, back.base_version, back.n_samples) == (2, version, 77)
    assert meta["accuracy"] == 0.5


def test_dense_update_sends_no_indices():
    update = SparseUpdate.dense(0, np.ones(SIZE, np.float32), 3)
    content = update_content(update, SIZE)
    assert content["update"]["indices"].numpy().size == 0
    assert read_update(content, SIZE)[0].indices.size == SIZE


def test_download_round_trips():
    idx, vals = np.array([1, 5], np.int64), np.array([0.5, -0.5], np.float32)
    i, v, version, meta = read_download(download_content(idx, vals, 9, 2))
    assert np.array_equal(i, idx) and np.array_equal(v, vals) and version == 9
    assert meta["round"] == 2


def _reply(indices: np.ndarray, values: np.ndarray, **meta) -> RecordDict:
    base = {"base_version": 0, "count": 2, "n_samples": 1, "pid": 0}
    arrays = ArrayRecord({"indices": Array(indices), "values": Array(values)})
    return RecordDict({"update": arrays, "meta": ConfigRecord(base | meta)})


@pytest.mark.parametrize(
    "content, reason",
    [
        (RecordDict({"meta": ConfigRecord({"pid": 0})}), "malformed"),
        (_reply(np.zeros(3, np.uint8), np.zeros(2, np.float32)), "encoding"),
        (_reply(np.zeros(4, np.int64), np.zeros(2, np.float32)), "encoding"),
        (
            _reply(np.array([255, 255, 255], np.uint8), np.zeros(2, np.float32), count=2),
            "encoding",
        ),
        (
            _reply(np.zeros(0, np.uint8), np.zeros(SIZE, np.float64), count=SIZE),
            "type",
        ),
    ],
)
def test_malformed_replies_are_refused(content, reason):
    with pytest.raises(UpdateRejected) as e:
        read_update(content, SIZE)
    assert e.value.reason == reason
