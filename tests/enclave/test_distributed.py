import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.enclave.distributed import DistributedError, train_distributed
from veil.enclave.sandbox import Limits

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap missing")
LIMITS = Limits(wall_s=60, pad_s=0, result_bytes=4096)

LOGISTIC = """
import numpy as np

def load_shard(shard):
    rows = np.frombuffer(shard, dtype=np.float32).reshape(-1, 4)
    return {"x": np.c_[rows[:, :3], np.ones(len(rows))], "y": rows[:, 3]}

def local(state, params):
    if not params:
        return np.zeros(4, np.float32).tobytes()
    w = np.frombuffer(params, dtype=np.float32).astype(np.float64)
    for _ in range(20):
        p = 1 / (1 + np.exp(-state["x"] @ w))
        w = w - 0.5 * state["x"].T @ (p - state["y"]) / len(p)
    return w.astype(np.float32).tobytes()
"""


def _shards(n_shards=3, n=300, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = (x @ np.array([2.0, -1.0, 0.5]) > 0).astype(np.float32)
    rows = np.c_[x, y].astype(np.float32)
    return x, y, [p.tobytes() for p in np.array_split(rows, n_shards)]


def test_workers_train_one_model_through_the_runtime():
    x, y, shards = _shards()
    params, facts = train_distributed(LOGISTIC, shards, rounds=5, limits=LIMITS)
    w = np.frombuffer(params, dtype=np.float32)
    acc = np.mean(((np.c_[x, np.ones(len(x))] @ w) > 0) == y)
    assert facts == {"workers": 3, "rounds": 5, "parameters": 4} and acc > 0.9


def test_a_misbehaving_worker_stops_the_job():
    _, _, shards = _shards()
    bad = LOGISTIC.replace("def local(state, params):", "def local(state, params):\n    import os\n"
                           "    if params and len(state['y']) == 100: os.fork()")  # fmt: skip
    with pytest.raises(DistributedError, match="killed"):
        train_distributed(bad, shards, rounds=2, limits=LIMITS)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.binary(max_size=64), min_size=1, max_size=5))
def test_channel_messages_are_fixed_size_and_in_order(payloads):
    from cryptography.exceptions import InvalidTag

    from veil.enclave.confine import Channel

    key = bytes(32)
    a, b = Channel(key, 64), Channel(key, 64)
    sealed = [a.seal(p, b"q") for p in payloads]
    assert {len(m) for m in sealed} == {a.sealed_size()}
    assert [b.open(m, b"q") for m in sealed] == payloads
    c = Channel(key, 64)
    if len(sealed) > 1:  # reordered: the second message does not open as the first
        with pytest.raises(InvalidTag):
            c.open(sealed[1], b"q")
    with pytest.raises(InvalidTag):
        Channel(key, 64).open(sealed[0], b"r")  # the other direction
    with pytest.raises(ValueError, match="over the channel"):
        a.seal(bytes(65), b"q")
