"""Services listen on a port the system chooses and say which; a taken port is a clear error."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from veil.core.errors import VeilError
from veil.core.net import ServiceProcess, listening


def test_port_zero_is_held_from_the_start_and_written_whole(tmp_path):
    port_file = tmp_path / "port"
    with listening("127.0.0.1", 0, port_file) as sock:
        port = sock.getsockname()[1]
        assert port > 0 and port_file.read_text() == str(port)
        assert not (tmp_path / "port.part").exists()
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # it accepts (into the backlog) before any server runs on it
        with pytest.raises(VeilError, match=f"cannot listen on 127.0.0.1:{port}"):
            listening("127.0.0.1", port)  # nobody else gets it meanwhile


def test_service_process_reads_the_port_its_service_chose(tmp_path):
    folder = tmp_path / "broker"
    args = ["model", "broker", "--folder", str(folder)]
    with ServiceProcess(args, "/v1/health", "key broker") as first:
        with ServiceProcess(args, "/v1/health", "key broker") as second:
            assert 0 < first.port != second.port > 0
            assert second.url == f"http://127.0.0.1:{second.port}"
        taken = ServiceProcess(args, "/v1/health", "key broker", port=first.port)
        with pytest.raises(VeilError, match="exited: error: cannot listen on"), taken:
            pass  # its port is taken: the child says so, and the other service is not probed
    assert first.process is None and first.scratch is None  # stopped, temp folder gone


def _group(script: str):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", script], start_new_session=True,
                            stdout=subprocess.PIPE)  # fmt: skip


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"  # a child of the killed leader: reparented, dead but not yet reaped


def test_stop_groups_stops_what_the_children_started_and_kills_who_ignores_term():
    import time

    from veil.core.net import stop_groups

    # a leader that ignores SIGTERM and started a grandchild; a second that ended already
    stubborn = _group(
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    grandchild = int(stubborn.stdout.readline())
    done = _group("pass")
    done.wait()
    start = time.monotonic()
    stop_groups([stubborn, done], grace_s=1.0)
    waited = time.monotonic() - start
    assert 1.0 <= waited < 10  # the grace, then SIGKILL
    assert stubborn.returncode == -9 and done.returncode == 0
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)
    # without grace, SIGKILL at once
    again = _group("import time; time.sleep(60)")
    start = time.monotonic()
    stop_groups([again])
    assert again.returncode == -9 and time.monotonic() - start < 1.0
