"""Inside the sandbox: the trusted shim that confines the operator's code, then runs it.

Run by :mod:`veil.enclave.sandbox` as ``python -I -m veil.enclave.confine ENTRY`` inside
bubblewrap. In order: read the data from stdin (the only way in), set resource limits,
send stdout and stderr to /dev/null, apply Landlock (where the kernel has it) and the
seccomp allow-list, then run the operator's code (``/job/code.py``) and call its ``ENTRY``
function on the data. Its return value (bytes) leaves as one fixed-size record on the
record pipe (its descriptor is an argument); the record is the only way out. Nothing here prints.
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


def _read_stdin() -> bytes:
    data = sys.stdin.buffer.read()
    os.close(0)
    return data


def main() -> None:
    entry, out_fd, result_size, memory, cpu, fsize, nofile = sys.argv[1], *map(int, sys.argv[2:8])
    data = _read_stdin()
    source = open("/job/code.py", encoding="utf-8").read()  # noqa: SIM115 (read before limits)
    import numpy  # noqa: F401  (heavy imports before the filter, so they need no new rights)
    import pyseccomp  # noqa: F401  (finds libseccomp by running ldconfig: before the filter)
    import torch  # noqa: F401

    from veil.enclave import policy

    _limits(memory, cpu, fsize, nofile)
    _silence()
    policy.landlock("/scratch")
    policy.seccomp()
    status, payload = "error", b""
    try:
        namespace: dict = {"__name__": "operator_code"}
        exec(compile(source, "/job/code.py", "exec"), namespace)  # the confined code
        out = namespace[entry](data)
        if not isinstance(out, bytes | bytearray):
            status = "bad-type"
        elif len(out) > result_size:
            status = "oversized"
        else:
            status, payload = "ok", bytes(out)
    except BaseException:  # noqa: BLE001  (any failure is one status; no text leaves)
        status = "error"
    rec = record(status, payload, result_size)
    view = memoryview(rec)
    while view:
        view = view[os.write(out_fd, view) :]
    os._exit(0)


if __name__ == "__main__":
    main()
