import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.collab.updates import (
    Limits,
    SparseUpdate,
    UpdateRejected,
    check_update,
    decode_indices,
    encode_indices,
    wire_bytes,
)


@st.composite
def index_sets(draw):
    n = draw(st.integers(1, 5000))
    idx = draw(st.sets(st.integers(0, n - 1), max_size=min(n, 400)))
    return n, np.array(sorted(idx), dtype=np.int64)


@given(index_sets())
@settings(max_examples=200, deadline=None)
def test_elias_fano_round_trips(case):
    n, idx = case
    assert np.array_equal(decode_indices(encode_indices(idx, n), n, idx.size), idx)


@given(st.binary(max_size=64), st.integers(1, 2000), st.integers(0, 300))
@settings(max_examples=300, deadline=None)
def test_decoding_arbitrary_bytes_never_crashes(blob, n, k):
    try:
        out = decode_indices(np.frombuffer(blob, np.uint8), n, k)
    except UpdateRejected:
        return
    assert out.shape == (k,)


def test_ten_percent_update_is_under_twelve_percent_of_dense():
    n = 109_386  # the MNIST MLP
    idx = np.sort(np.random.default_rng(0).choice(n, n // 10, replace=False))
    assert wire_bytes(idx, n) / wire_bytes(np.arange(n), n) < 0.12
    assert wire_bytes(np.arange(n), n) == 16 + 4 * n  # a dense upload sends no indices


def _update(idx, val, base=0):
    return SparseUpdate(0, np.asarray(idx, np.int64), np.asarray(val, np.float32), base)


LIMITS = Limits(size=10, max_count=4, bound=1.0, staleness=2)


@pytest.mark.parametrize(
    "update, reason",
    [
        (SparseUpdate(0, np.array([1], np.int32), np.array([0.1], np.float32), 0), "type"),
        (SparseUpdate(0, np.array([1], np.int64), np.array([0.1], np.float64), 0), "type"),
        (_update([1, 2], [0.1]), "shape"),
        (_update([0, 1, 2, 3, 4], [0.1] * 5), "count"),
        (_update([10], [0.1]), "range"),
        (_update([-1], [0.1]), "range"),
        (_update([3, 3], [0.1, 0.2]), "duplicate"),
        (_update([3], [np.nan]), "non-finite"),
        (_update([3], [np.inf]), "non-finite"),
        (_update([3], [1.5]), "bound"),
        (_update([3], [0.1], base=9), "version"),
        (_update([3], [0.1], base=2), "stale"),
    ],
)
def test_malformed_updates_are_rejected_with_a_reason(update, reason):
    with pytest.raises(UpdateRejected) as e:
        check_update(update, LIMITS, version=5)
    assert e.value.reason == reason


def test_good_update_passes():
    check_update(_update([0, 9], [1.0, -1.0], base=3), LIMITS, version=5)
