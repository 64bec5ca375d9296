"""Services listen on a port the system chooses and say which; a taken port is a clear error."""

from __future__ import annotations

import socket

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
