"""The Flower engine: real SuperLink and SuperNodes on 127.0.0.1, started and stopped here."""

import os
import socket
import time
from functools import partial

import numpy as np
import pytest

from veil import collab
from veil.collab.flower.launcher import Cluster
from veil.collab.participant import flat
from veil.core.errors import VeilError
from veil.core.net import free_port

pytest.importorskip("flwr")
CFG = {"data": "digits", "participants": 3, "eval_limit": 200}


def test_dssgd_on_flower_equals_in_process_and_rounds_are_fast(tmp_path):
    cfg = collab.CollabConfig(rounds=4, **CFG)
    on_flower = collab.train(cfg, engine="flower", keep=tmp_path / "flower", timeout=60)
    local = collab.run(cfg, quiet=True)
    assert np.array_equal(flat(on_flower.model), flat(local.model))
    assert on_flower.guarantee.parameters["engine"] == "flower"
    assert on_flower.totals["updates_accepted"] == 12
    # Flower's overhead per round of 3 sequential exchanges, after the first round (which
    # loads torch and the data in each node). The goal (<= 1.5 s) is measured alone by
    # benchmarks/bench_collab.py; here the suite shares 2 cores, so the bound only catches a
    # return of the old waits (10-13 s per exchange).
    overhead = [
        f["seconds"] - i["seconds"] for f, i in zip(on_flower.history, local.history, strict=True)
    ]
    assert sorted(overhead[1:])[1] <= 4.0, overhead


def test_async_and_fedavg_on_flower(tmp_path):
    cfg = collab.CollabConfig(rounds=2, order="async", **CFG)
    result = collab.train(cfg, engine="flower", keep=tmp_path / "a", timeout=60)
    assert result.totals["updates_accepted"] == 6 and len(result.history) == 2
    cfg = collab.CollabConfig(algo="fedavg", rounds=2, **CFG)
    fed = collab.train(cfg, engine="flower", keep=tmp_path / "f", timeout=60)
    assert np.array_equal(flat(fed.model), flat(collab.run(cfg, quiet=True).model))


def test_cluster_stops_every_process_it_started(tmp_path):
    cluster = Cluster(2, tmp_path)
    cluster.start()
    try:
        time.sleep(1)
        cluster.check_alive()
        pids = [p.pid for p in cluster.procs]
        assert len(pids) == 5  # a SuperLink, and a SuperNode plus a task runner per node
    finally:
        cluster.stop()
    for pid in pids:  # each process led its own group; the whole group is gone
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)


def test_a_port_taken_before_flower_binds_it_is_replaced(tmp_path, monkeypatch):
    from veil.collab.flower import launcher

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        # the SuperLink's first pick and supernode-0's are taken by the time Flower binds them
        picks = iter([taken, None, taken])
        monkeypatch.setattr(launcher, "free_port", lambda: next(picks, None) or free_port())
        cluster = launcher.Cluster(1, tmp_path)
        try:
            cluster.start()
            time.sleep(1)
            cluster.check_alive()
            assert cluster.port != taken and len(cluster.procs) == 3
            for name in ("superlink", "supernode-0"):
                log = (tmp_path / "logs" / f"{name}.log").read_text().splitlines()
                assert any(launcher.TAKEN in line and str(taken) in line for line in log)
            runner = cluster.named["node-0"].args
            assert runner[-1] != f"127.0.0.1:{taken}" and runner[-1].startswith("127.0.0.1:")
        finally:
            cluster.stop()
        # a port the user chose is not replaced: its being taken is an error naming it
        procs = launcher.Processes(tmp_path / "fixed")
        node = partial(launcher.supernode_command, "127.0.0.1:9", 0, 1)
        try:
            with pytest.raises(
                VeilError, match=f"did not start \\(code 1\\): port {taken} is in use"
            ):
                procs.start_listening({"supernode": node}, port=taken)
        finally:
            procs.stop()


def test_secure_aggregation_with_secagg_plus_matches_plain_fedavg(tmp_path):
    cfg = collab.CollabConfig(
        algo="fedavg", rounds=2, fedavg=collab.FedAvgConfig(secure=True), **CFG
    )
    secure = collab.train(cfg, engine="flower", keep=tmp_path, timeout=60)
    plain = collab.run(collab.CollabConfig(algo="fedavg", rounds=2, **CFG), quiet=True)
    # the server saw only the sum; SecAgg+ quantizes to 2^22 levels over [-8, 8]
    assert np.abs(flat(secure.model) - flat(plain.model)).max() < 1e-3
    assert secure.guarantee.mechanism == "FedAvg + SecAgg+"
    assert "only the sum" in secure.guarantee.claim


def test_a_node_that_dies_mid_run_is_counted_and_the_run_goes_on(tmp_path):
    from veil.collab.flower.launcher import app_config, read_result, write_app

    cfg = collab.CollabConfig(rounds=3, **CFG)
    # Known flake (2 of 4 full-suite runs on 2026-11-29, never alone): under the loaded
    # parallel suite round 1 sometimes never finishes; one fresh cluster is tried again.
    # Not yet understood: see the session note.
    for attempt in range(2):
        work = tmp_path / f"try{attempt}"
        ckpt, result = work / "server.ckpt", work / "result.safetensors"
        cluster = Cluster(3, work)
        try:
            cluster.start()
            cluster.submit(write_app(work / "app", app_config(cfg, result, ckpt, timeout=5)))
            if not _appears(ckpt, 180):  # round 1 is done
                continue
            for name in ("supernode-2", "node-2"):  # node 2: its SuperNode and its task runner
                os.killpg(cluster.named[name].pid, 9)
            _wait_for(result)
            break
        finally:
            cluster.stop()
    outcome = read_result(cfg, result)
    assert len(outcome.history) == 3 and outcome.dropped >= 1
    assert sum(outcome.uploads) + outcome.dropped == 9


def _appears(path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _wait_for(path, seconds=300):
    # generous: a round starts five processes that each import torch, and under the
    # parallel suite on 2 cores the first round once took over 120 s (it takes ~20 s alone)
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)
