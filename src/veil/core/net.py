"""Local networking helpers shared by the packages that start services on 127.0.0.1."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceProcess:
    """A ``veil ... serve`` command as a child process on 127.0.0.1, stopped by PID.

    Up means ``probe`` (a path) answers 401: listening, and refusing strangers. Use as a
    context manager; leaving it stops the whole process group (SIGTERM, then SIGKILL).
    """

    def __init__(self, args: list[str], port: int, probe: str, what: str, wait_s: float = 60.0):
        self.args, self.port, self.probe, self.what, self.wait_s = args, port, probe, what, wait_s
        self.process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServiceProcess:
        import os
        import subprocess
        import sys

        self.process = subprocess.Popen(
            [sys.executable, "-m", "veil.cli.main", *self.args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
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
                err = self.process.stderr.read().decode(errors="replace").strip()
                raise VeilError(f"the {self.what} exited: {err.splitlines()[-1] if err else '?'}")
            try:
                if httpx.get(f"{self.url}{self.probe}", timeout=1).status_code == 401:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise VeilError(f"the {self.what} did not start within {self.wait_s:.0f} s")

    def __exit__(self, *exc) -> None:
        import os
        import signal

        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=20)
        except ProcessLookupError:
            pass
        except Exception:  # noqa: BLE001 - it would not stop: make sure it does
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        finally:
            self.process.stderr.close()
            self.process = None


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
