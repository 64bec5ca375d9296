"""Run untrusted training code confined (Ryoan's role in Chiron): data in, one record out.

:func:`run_confined` starts ``python -m veil.enclave.confine`` under bubblewrap:
``--unshare-all`` (no network, new PID/IPC/UTS/user namespaces), ``--die-with-parent``,
``--clearenv``, ``--new-session``, read-only binds of only what Python needs (the
interpreter, the virtual environment, veil's source, system libraries), a fresh ``/proc``
and a minimal read-only ``/dev``, and a tmpfs ``/scratch`` that is the only writable place.
Inside, :mod:`veil.enclave.confine` sets resource limits, Landlock and the seccomp
allow-list of :mod:`veil.enclave.policy` before the code runs. The data goes in on stdin;
stdout and stderr go nowhere; the only way out is one fixed-size record on a pipe, and the
wall time is padded to a multiple of ``pad_s`` so that how long the code ran says little.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from veil.core.errors import VeilError
from veil.core.net import stop_groups
from veil.enclave.confine import MAGIC, STATUS

HEADER = 9


class SandboxError(VeilError):
    """The sandbox cannot be started here (no bubblewrap, say)."""


@dataclass(frozen=True)
class Limits:
    """Resources the confined code may use; ``result_bytes`` is the fixed record size."""

    wall_s: float = 120.0
    cpu_s: int = 120
    memory_mb: int = 4096
    file_mb: int = 64
    open_files: int = 64
    result_bytes: int = 1 << 20
    request_bytes: int = 1 << 26  # serve mode: largest model or request frame
    scratch_mb: int = 64
    pad_s: float = 0.5


@dataclass
class Outcome:
    """How the confined run ended: ``ok`` (with ``result``), ``error`` (the code raised),
    ``oversized``, ``bad-type``, ``killed`` (by a signal: ``signal``), ``timeout``, or
    ``refused`` (the output was not exactly one record)."""

    status: str
    result: bytes | None
    seconds: float
    signal: str | None = None


def bwrap() -> str:
    path = shutil.which("bwrap")
    if path is None:
        raise SandboxError(
            "bubblewrap (bwrap) is not installed: `apt-get install bubblewrap` (make setup does)"
        )
    return path


def _binds() -> list[str]:
    """Read-only binds: system libraries, the interpreter, the venv, veil's source."""
    import veil

    paths = {"/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc/ld.so.cache", "/etc/alternatives"}
    paths |= {sys.base_prefix, sys.prefix, os.path.realpath(sys.executable)}
    paths.add(str(Path(veil.__file__).resolve().parents[1]))
    args = []
    for p in sorted(paths):
        if os.path.lexists(p):
            args += ["--ro-bind", p, p]
    return args


def command(
    code_dir: Path, entry: str, limits: Limits, out_fd: int, mode: str = "train"
) -> list[str]:
    """The bubblewrap command line that runs the shim on ``code_dir/code.py``; the record
    comes out on descriptor ``out_fd``."""
    mb = 1 << 20
    return [
        bwrap(), "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
        "--setenv", "PATH", "/usr/bin:/bin",
        *_binds(),
        "--ro-bind", str(code_dir), "/job",
        "--proc", "/proc", "--dev", "/dev",
        "--size", str(limits.scratch_mb * mb), "--tmpfs", "/scratch", "--chdir", "/scratch",
        "--remount-ro", "/dev",
        sys.executable, "-I", "-m", "veil.enclave.confine", mode, entry, str(out_fd),
        str(limits.result_bytes), str(limits.memory_mb * mb), str(limits.cpu_s),
        str(limits.file_mb * mb), str(limits.open_files), str(limits.request_bytes),
    ]  # fmt: skip


def _start(code_dir: Path, code: str, entry: str, limits: Limits, mode: str):
    """Write ``code`` to ``code_dir`` and start the shim on it under bubblewrap; the process
    and the read end of its record pipe."""
    (code_dir / "code.py").write_text(code)
    read_end, write_end = os.pipe()
    try:
        proc = subprocess.Popen(
            command(code_dir, entry, limits, write_end, mode),
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(write_end,), start_new_session=True,
        )  # fmt: skip
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    return proc, read_end


def run_confined(
    code: str, data: bytes, entry: str = "train", limits: Limits | None = None
) -> Outcome:
    """Run ``code``'s ``entry(data) -> bytes`` confined; see the module for what that means."""
    limits = limits or Limits()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="veil-job-") as tmp:
        proc, read_end = _start(Path(tmp), code, entry, limits, "train")
        try:
            _feed(proc, data)
            out, timed_out = _collect(read_end, proc, limits, start)
        finally:
            os.close(read_end)
            stop_groups([proc])
    outcome = _outcome(out, proc.returncode, timed_out, limits)
    outcome.seconds = _pad(start, limits.pad_s)
    return outcome


def _feed(proc: subprocess.Popen, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.write(data)
        proc.stdin.close()


def _collect(fd: int, proc, limits: Limits, start: float) -> tuple[bytes, bool]:
    """Everything written to the record pipe (at most one record and a byte), until EOF."""
    cap, chunks, size = HEADER + limits.result_bytes + 1, [], 0
    while True:
        left = limits.wall_s - (time.monotonic() - start)
        if left <= 0:
            return b"".join(chunks), True
        ready, _, _ = select.select([fd], [], [], min(left, 1.0))
        if not ready:
            continue
        piece = os.read(fd, 1 << 20)
        if not piece:
            break
        if size < cap:
            chunks.append(piece[: cap - size])
        size += len(piece)
    try:
        proc.wait(timeout=max(0.1, limits.wall_s - (time.monotonic() - start)))
    except subprocess.TimeoutExpired:
        return b"".join(chunks), True
    return b"".join(chunks), False


def _outcome(out: bytes, code: int | None, timed_out: bool, limits: Limits) -> Outcome:
    if timed_out:
        return Outcome("timeout", None, 0.0)
    if name := _signal_name(code):
        return Outcome("killed", None, 0.0, name)
    return _parse(out, limits)


def _signal_name(code: int | None) -> str | None:
    """The signal that ended the process (bubblewrap reports a killed child as 128 + n)."""
    if not code or 0 <= code <= 128:
        return None
    return signal.Signals(-code if code < 0 else code - 128).name


def _parse(out: bytes, limits: Limits) -> Outcome:
    """The outcome one record says; anything but exactly one well-formed record: refused."""
    names = {v: k for k, v in STATUS.items()}
    if len(out) != HEADER + limits.result_bytes or out[:4] != MAGIC or out[4] not in names:
        return Outcome("refused", None, 0.0)
    (length,) = struct.unpack(">I", out[5:9])
    status = names[out[4]]
    if length > limits.result_bytes or (status != "ok" and length):
        return Outcome("refused", None, 0.0)
    return Outcome(status, out[HEADER : HEADER + length] if status == "ok" else None, 0.0)


class ConfinedWorker:
    """A confined process that keeps the operator's model and answers requests with it.

    The model goes in once; each request gets one fixed-size record back, in order. Requests
    are serialised per worker (run several workers for concurrency). If the process dies or
    misbehaves, every later request is refused.
    """

    def __init__(self, code: str, model: bytes, entry: str = "predict",
                 limits: Limits | None = None, start_timeout_s: float = 60.0,
                 sealed: bool = False):  # fmt: skip
        import threading

        from veil.enclave.confine import Channel, frame

        self.limits = limits or Limits()
        key = os.urandom(32)
        self._channel = Channel(key, self.limits.request_bytes) if sealed else None
        self._tmp = tempfile.TemporaryDirectory(prefix="veil-serve-")
        mode = "serve-sealed" if sealed else "serve"
        self._proc, self._read = _start(Path(self._tmp.name), code, entry, self.limits, mode)
        self._lock = threading.Lock()
        self._broken = False
        if self._channel is not None:
            self._send(key)
            model = self._channel.seal(model, b"m", len(model))
        self._send(frame(model))
        ready = self._receive(start_timeout_s)
        if ready.status != "ok":
            self.close()
            raise SandboxError(f"the operator's load() did not start the worker ({ready.status})")

    def _send(self, data: bytes) -> None:
        try:
            self._proc.stdin.write(data)
            self._proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            self._broken = True

    def _receive(self, timeout_s: float) -> Outcome:
        size, got = HEADER + self.limits.result_bytes, bytearray()
        if self._channel is not None:
            size = self._channel.sealed_size(size)
        deadline = time.monotonic() + timeout_s
        while len(got) < size and not self._broken:
            left = deadline - time.monotonic()
            if left <= 0:
                self._broken = True
                return Outcome("timeout", None, 0.0)
            ready, _, _ = select.select([self._read], [], [], left)
            if ready:
                piece = os.read(self._read, size - len(got))
                self._broken = not piece
                got += piece
        if self._broken:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
            name = _signal_name(self._proc.poll())
            return Outcome("killed" if name else "refused", None, 0.0, name)
        if self._channel is not None:
            try:
                got = self._channel.open(bytes(got), b"r")
            except Exception:  # noqa: BLE001  (cryptography's InvalidTag: not from the shim)
                self._broken = True
                return Outcome("refused", None, 0.0)
        return _parse(bytes(got), self.limits)

    def ask(self, request: bytes, timeout_s: float = 30.0) -> Outcome:
        """The operator code's answer to ``request`` (one record), or a refusal."""
        from veil.enclave.confine import frame

        with self._lock:
            if self._broken or len(request) > self.limits.request_bytes:
                return Outcome("refused", None, 0.0)
            start = time.monotonic()
            if self._channel is not None:
                request = self._channel.seal(request, b"q")
            self._send(frame(request))
            out = self._receive(timeout_s)
            out.seconds = time.monotonic() - start
            return out

    def close(self) -> None:
        self._broken = True
        with contextlib.suppress(OSError, ValueError):
            self._proc.stdin.close()
        stop_groups([self._proc])
        with contextlib.suppress(OSError):
            os.close(self._read)
        self._tmp.cleanup()

    def __enter__(self) -> ConfinedWorker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _pad(start: float, quantum: float) -> float:
    """Sleep until the elapsed time is a whole number of ``quantum``; return that time."""
    elapsed = time.monotonic() - start
    target = quantum * max(1, -(-elapsed // quantum)) if quantum > 0 else elapsed
    time.sleep(max(0.0, target - elapsed))
    return target
