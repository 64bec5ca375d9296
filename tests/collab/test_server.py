import numpy as np
import pytest

from veil.collab.server import ParameterServer
from veil.collab.updates import Limits, SparseUpdate, UpdateRejected
from veil.core.errors import ModelFileError


def _server(size=8, decay=1.0, staleness=None):
    return ParameterServer(np.zeros(size, np.float32), Limits(size, size, 1.0, staleness), decay)


def _up(idx, val, base, pid=0):
    return SparseUpdate(pid, np.array(idx, np.int64), np.array(val, np.float32), base)


def test_apply_adds_values_and_bumps_version():
    s = _server()
    s.apply(_up([1, 3], [0.5, -0.25], 0))
    s.apply(_up([1], [0.5], 1))
    assert s.params.tolist() == [0, 1.0, 0, -0.25, 0, 0, 0, 0]
    assert s.version == 2 and s.stats.accepted == 2


def test_rejected_update_changes_nothing_and_is_counted():
    s = _server()
    s.apply(_up([2], [0.5], 0))
    before = s.state()
    for bad in (_up([2, 2], [0.1, 0.1], 1), _up([1], [np.nan], 1), _up([99], [0.1], 1)):
        with pytest.raises(UpdateRejected):
            s.apply(bad)
    after = s.state()
    assert all(np.array_equal(before[0][k], after[0][k]) for k in before[0])
    assert s.version == 1
    assert s.stats.rejected == {"duplicate": 1, "non-finite": 1, "range": 1}


def test_stale_updates_are_refused_past_the_bound():
    s = _server(staleness=1)
    for v in range(3):
        s.apply(_up([0], [0.1], v))
    s.apply(_up([1], [0.1], 2))  # one behind: fine
    with pytest.raises(UpdateRejected, match="staleness"):
        s.apply(_up([1], [0.1], 1))  # three behind


def test_download_policies_rank_as_named():
    s = _server()
    s.apply(_up([0, 1], [0.1, 0.1], 0))
    s.apply(_up([0], [0.1], 1))
    s.apply(_up([5], [0.9], 2))
    assert s.download(0.125, "frequency").indices.tolist() == [0]  # updated twice
    assert s.download(0.125, "largest").indices.tolist() == [5]  # changed by 0.9
    assert s.download(0.125, "recent").indices.tolist() == [5]  # updated last
    full = s.download(1.0)
    assert np.array_equal(full.values, s.params) and full.version == 3


def test_decay_favours_recent_activity():
    s = _server(decay=0.5)
    s.apply(_up([0], [0.1], 0))
    s.apply(_up([0], [0.1], 1))
    s.apply(_up([1], [0.1], 2))
    s.apply(_up([1], [0.1], 3))
    s.apply(_up([1], [0.1], 4))
    assert s.download(0.125, "frequency").indices.tolist() == [1]


def test_checkpoint_round_trips(tmp_path):
    s = _server(decay=0.9, staleness=3)
    s.apply(_up([1, 4], [0.3, -0.2], 0))
    with pytest.raises(UpdateRejected):
        s.apply(_up([1], [5.0], 1))
    s.save(tmp_path / "server.ckpt")
    t = ParameterServer.load(tmp_path / "server.ckpt")
    assert t.version == s.version and t.limits == s.limits and t.decay == s.decay
    assert t.stats == s.stats
    for k, v in s.state()[0].items():
        assert np.array_equal(v, t.state()[0][k])


def test_load_refuses_other_files(tmp_path):
    bad = tmp_path / "x.ckpt"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}" + b" " * 14)
    with pytest.raises(ModelFileError):
        ParameterServer.load(bad)
