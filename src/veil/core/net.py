"""Local networking helpers shared by the packages that start services on 127.0.0.1."""

from __future__ import annotations

import socket
from pathlib import Path

PORT_FILE_HELP = "Write the port listened on here (with --port 0, the one the system chose)."


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (it may be taken before the
    caller binds it: a service of ours listens with :func:`listening` on port 0 instead)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(host: str, port: int, port_file: Path | None = None) -> socket.socket:
    """A socket listening on ``host:port``; port 0 lets the system choose, and the port is
    held from the moment it is chosen (no port picked, released and taken by someone else
    before the service binds it). With ``port_file``, the port is written there, whole (by
    rename), for the process that started this one."""
    from veil.core.errors import VeilError

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise VeilError(f"cannot listen on {host}:{port}: {e.strerror}") from e
    if port_file is not None:
        part = Path(f"{port_file}.part")
        part.write_text(str(sock.getsockname()[1]))
        part.replace(port_file)
    return sock


def serve(app, sock: socket.socket) -> None:
    """Serve the ASGI ``app`` with uvicorn on ``sock`` (from :func:`listening`) until stopped."""
    import uvicorn

    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


def stop_groups(procs, grace_s: float = 0.0) -> None:
    """Stop child processes started with ``start_new_session``, each with its whole process
    group (what it started too), and reap them. With ``grace_s``: SIGTERM, then SIGKILL for
    what still runs after that many seconds (all share one deadline); without: SIGKILL."""
    import contextlib
    import os
    import signal
    import subprocess
    import time

    def group(proc, sig) -> None:
        with contextlib.suppress(ProcessLookupError):  # the group has ended
            os.killpg(proc.pid, sig)

    procs = list(procs)
    for proc in procs:
        group(proc, signal.SIGTERM if grace_s > 0 else signal.SIGKILL)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            group(proc, signal.SIGKILL)
            proc.wait()


class ServiceProcess:
    """A ``veil ... serve`` command as a child process on 127.0.0.1, stopped by PID.

    The command gets ``--port`` (default 0: the system chooses) and ``--port-file``, which
    it writes once it listens. Up means the port file is there and ``probe`` (a path) on
    that port answers 401: listening, and refusing strangers. Use as a context manager;
    leaving it stops the whole process group (SIGTERM, then SIGKILL).
    """

    def __init__(self, args: list[str], probe: str, what: str, wait_s: float = 60.0, port: int = 0):
        self.args, self.probe, self.what, self.wait_s = args, probe, what, wait_s
        self.asked, self.port = port, None
        self.process = None
        self.scratch = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServiceProcess:
        import os
        import subprocess
        import sys
        import tempfile

        self.scratch, self.port = Path(tempfile.mkdtemp(prefix="veil-service-")), None
        ports = ["--port", str(self.asked), "--port-file", str(self.scratch / "port")]
        # its errors go to a file, not a pipe: nobody reads while it serves, and a service
        # that filled a pipe (64 KiB) would block on it
        with open(self.scratch / "stderr", "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "veil.cli.main", *self.args, *ports],
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
                env={**os.environ, "VEIL_QUIET": "1"},
            )
        try:
            self._wait()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait(self) -> None:
        import time

        import httpx

        from veil.core.errors import VeilError

        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (self.scratch / "stderr").read_text(errors="replace").strip()
                raise VeilError(f"the {self.what} exited: {err.splitlines()[-1] if err else '?'}")
            if self.port is None:  # the port file is written once its socket listens: a
                if not (self.scratch / "port").exists():  # port held by another is never probed
                    time.sleep(0.1)
                    continue
                self.port = int((self.scratch / "port").read_text())
            try:
                if httpx.get(f"{self.url}{self.probe}", timeout=1).status_code == 401:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise VeilError(f"the {self.what} did not start within {self.wait_s:.0f} s")

    def __exit__(self, *exc) -> None:
        import shutil

        if self.process is not None:
            stop_groups([self.process], grace_s=20)
            self.process = None
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None


def json_reply(send, what: str, error: type[Exception]) -> dict:
    """The JSON of ``send()`` (an httpx request); ``error`` naming ``what`` if the service
    cannot be reached or does not answer 200 (with the service's own reason)."""
    import httpx

    try:
        r = send()
    except httpx.HTTPError as e:
        raise error(f"cannot reach the {what}: {e}") from e
    if r.status_code != 200:
        detail = r.text
        if r.headers.get("content-type", "").startswith("application/json"):
            detail = r.json().get("detail", r.text)
        raise error(f"{what}: {r.status_code} {detail}")
    return r.json()
