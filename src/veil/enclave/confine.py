"""Inside the sandbox: the trusted shim that confines the operator's code, then runs it.

Run by :mod:`veil.enclave.sandbox` as ``python -I -m veil.enclave.confine MODE ENTRY ...``
inside bubblewrap. In order: read the data from stdin (the only way in), set resource limits,
send stdout and stderr to /dev/null, apply Landlock (where the kernel has it) and the
seccomp allow-list, then run the operator's code (``/job/code.py``) and call its ``ENTRY``
function on the data. Its return value (bytes) leaves as one fixed-size record on the
record pipe (its descriptor is an argument); the record is the only way out. Nothing here prints.

Mode ``serve`` (or ``serve-sealed``, whose messages are fixed-size AES-GCM, see
:class:`Channel`) keeps the confined process for inference or distributed training: the
model arrives first (one frame), the code's ``load(model)`` runs once, then each framed
request on stdin gets one fixed-size record from ``ENTRY(state, request)``.
"""

from __future__ import annotations

import os
import resource
import struct
import sys

MAGIC = b"VREC"
STATUS = {"ok": 0, "error": 1, "oversized": 2, "bad-type": 3}


def record(status: str, payload: bytes, size: int) -> bytes:
    """MAGIC, status, length, payload, zero padding: always ``size`` + 9 bytes."""
    body = payload if status == "ok" else b""
    return MAGIC + bytes([STATUS[status]]) + struct.pack(">I", len(body)) + body.ljust(size, b"\0")


def _limits(memory: int, cpu: int, fsize: int, nofile: int) -> None:
    for res, value in (
        (resource.RLIMIT_AS, memory),
        (resource.RLIMIT_CPU, cpu),
        (resource.RLIMIT_FSIZE, fsize),
        (resource.RLIMIT_NOFILE, nofile),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(res, (value, value))


def _silence() -> None:
    null = os.open("/dev/null", os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)


def _read_exact(n: int) -> bytes | None:
    """``n`` bytes from stdin, or None at end of input."""
    out = bytearray()
    while len(out) < n:
        piece = os.read(0, n - len(out))
        if not piece:
            return None
        out += piece
    return bytes(out)


def _write(fd: int, rec: bytes) -> None:
    view = memoryview(rec)
    while view:
        view = view[os.write(fd, view) :]


def _answer(fn, args, result_size: int) -> bytes:
    """The record for ``fn(*args)``: ok with its bytes, or a bare status (no text leaves)."""
    try:
        out = fn(*args)
    except BaseException:  # noqa: BLE001  (any failure is one status)
        return record("error", b"", result_size)
    if not isinstance(out, bytes | bytearray):
        return record("bad-type", b"", result_size)
    if len(out) > result_size:
        return record("oversized", b"", result_size)
    return record("ok", bytes(out), result_size)


class Channel:
    """Fixed-size AES-256-GCM messages between the runtime and a worker's shim (both trusted):
    each payload is length-prefixed, zero-padded to ``size`` and sealed under the worker's
    session key with a counter nonce per direction, so the pipe carries only equal-size
    ciphertexts, in order (a replayed, reordered or altered message fails to open)."""

    def __init__(self, key: bytes, size: int):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead, self.size = AESGCM(key), size
        self._count: dict[bytes, int] = {}

    def _nonce(self, direction: bytes) -> bytes:
        n = self._count.get(direction, 0)
        self._count[direction] = n + 1
        return direction + n.to_bytes(11, "big")

    def sealed_size(self, size: int | None = None) -> int:
        return 4 + (self.size if size is None else size) + 16

    def seal(self, payload: bytes, direction: bytes, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        if len(payload) > size:
            raise ValueError(f"message of {len(payload)} bytes over the channel's {size}")
        body = struct.pack(">I", len(payload)) + payload.ljust(size, b"\0")
        return self._aead.encrypt(self._nonce(direction), body, None)

    def open(self, blob: bytes, direction: bytes) -> bytes:
        body = self._aead.decrypt(self._nonce(direction), blob, None)
        (n,) = struct.unpack(">I", body[:4])
        return body[4 : 4 + n]


def frame(payload: bytes) -> bytes:
    """A request on the serve worker's stdin: 4-byte big-endian length, then the bytes."""
    return struct.pack(">I", len(payload)) + payload


def main() -> None:
    mode, entry = sys.argv[1], sys.argv[2]
    out_fd, result_size, memory, cpu, fsize, nofile, max_in = map(int, sys.argv[3:10])
    if mode == "train":
        data = sys.stdin.buffer.read()  # all of it, before confinement
        os.close(0)
    else:  # serve: (with "serve-sealed", the session key first), then the model, one frame
        channel = Channel(_read_exact(32), max_in) if mode == "serve-sealed" else None
        size = struct.unpack(">I", _read_exact(4))[0]
        data = _read_exact(size)
        if channel is not None:
            data = channel.open(data, b"m")
    source = open("/job/code.py", encoding="utf-8").read()  # noqa: SIM115 (read before limits)
    import numpy  # noqa: F401  (heavy imports before the filter, so they need no new rights)
    import pyseccomp  # noqa: F401  (finds libseccomp by running ldconfig: before the filter)
    import torch  # noqa: F401

    from veil.enclave import policy

    _limits(memory, cpu, fsize, nofile)
    _silence()
    policy.landlock("/scratch")
    policy.seccomp()
    namespace: dict = {"__name__": "operator_code"}
    try:
        exec(compile(source, "/job/code.py", "exec"), namespace)  # the confined code
    except BaseException:  # noqa: BLE001  (a failure is one status; no text leaves)
        namespace = {}
    if mode == "train":
        fn = namespace.get(entry)
        _write(
            out_fd, _answer(fn, (data,), result_size) if fn else record("error", b"", result_size)
        )
        os._exit(0)
    _serve(namespace, entry, data, out_fd, result_size, max_in, channel)


def _serve(namespace: dict, entry: str, model, out_fd: int, result_size: int, max_in: int,
           channel: Channel | None):  # fmt: skip
    """Answer framed requests with ``entry(state, request)``, where ``state`` is what the
    code's ``load(model)`` returned (``entry`` may name the loader: ``"load_shard:local"``);
    one fixed-size record per request, in order (sealed on ``channel`` if there is one)."""

    def send(rec: bytes) -> None:
        _write(out_fd, channel.seal(rec, b"r", len(rec)) if channel else rec)

    loader, _, entry = entry.rpartition(":")
    state = None
    try:
        state = namespace[loader or "load"](model)
        send(record("ok", b"", result_size))
    except BaseException:  # noqa: BLE001
        send(record("error", b"", result_size))
    limit = channel.sealed_size() if channel else max_in
    while (head := _read_exact(4)) is not None:
        (size,) = struct.unpack(">I", head)
        request = _read_exact(size) if size <= limit else None
        if request is None:
            os._exit(3)
        if channel is not None:
            request = channel.open(request, b"q")  # a bad message raises: the worker ends
        send(_answer(namespace.get(entry), (state, request), result_size))
    os._exit(0)


if __name__ == "__main__":
    main()
