"""Red-team programs against the sandbox: each tries to get the data out or break
confinement, and must end killed or refused with nothing out (:func:`run`).

Used by the tests and by ``benchmarks/bench_enclave.py`` (``redteam_contained`` of
``redteam_total``). A TCP connection to a listener on the host's loopback is in the tests
(it needs a listener); here a connect attempt to the host's loopback stands in for it.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path

from veil.enclave.sandbox import Limits, Outcome, run_confined

SECRET = b"patient 4417202: HIV positive"
CONTAINED = frozenset({"killed", "error", "refused", "timeout", "oversized", "bad-type"})

ATTACKS = {
    "tcp": "import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=2).sendall(data)\n"
    "return b'sent'",
    "udp": "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.sendto(data, ('127.0.0.1', 9))\nreturn b'sent'",
    "write-outside-scratch": "open('/job/leak.txt', 'wb').write(data)\nreturn b'written'",
    "write-host-tmp": "open({host_tmp!r} + '/leak.txt', 'wb').write(data)\nreturn b'written'",
    "dev-shm": "open('/dev/shm/leak', 'wb').write(data)\nreturn b'written'",
    "exec-shell": "import os\nos.execv('/bin/sh', ['sh', '-c', 'echo leak'])",
    "fork": "import os\npid = os.fork()\nreturn b'forked'",
    "subprocess": "import subprocess\nreturn subprocess.run(['id'], capture_output=True).stdout",
    "ptrace": "import ctypes\nctypes.CDLL(None).ptrace(0, 0, 0, 0)\nreturn b'traced'",
    "proc-of-host": "return open('/proc/{host_pid}/environ', 'rb').read()",
    "io-uring": "import ctypes\nctypes.CDLL(None).syscall(425, 8, ctypes.c_void_p(0))\n"
    "return b'ring'",
    "openat2": "import ctypes\nlibc = ctypes.CDLL(None)\nlibc.syscall(437, -100, b'/etc', 0, 0)\n"
    "return b'opened'",
    "memory": "blob = bytearray(8 << 30)\nreturn b'allocated'",
    "cpu": "while True:\n        pass",
    "wall-time": "import time\ntime.sleep(30)\nreturn b'slept'",
    "oversized": "return data * 1000",
    "not-bytes": "return 'a string'",
    "extra-record": "import os\nfor fd in range(3, 64):\n        try:\n"
    "            os.write(fd, data * 8)\n        except OSError:\n            pass\nreturn b'x'",
}  # fmt: skip
SIGSYS = frozenset({"exec-shell", "fork", "ptrace", "io-uring", "openat2"})


def program(name: str, host_tmp: str) -> str:
    """The attack ``name`` as operator code with a ``train(data)`` entry."""
    body = ATTACKS[name].format(host_pid=os.getpid(), host_tmp=host_tmp)
    return "def train(data):\n    " + body.replace("\n", "\n    ") + "\n"


def limits_for(name: str, base: Limits) -> Limits:
    """Tighter limits for the attacks that test a limit (so they end quickly)."""
    return {
        "memory": replace(base, memory_mb=1024),
        "cpu": replace(base, cpu_s=1),
        "wall-time": replace(base, wall_s=4.0),
    }.get(name, base)


def attempt(name: str, base: Limits) -> tuple[Outcome, bool]:
    """Run one attack; whether it was contained (no result, nothing left on the host)."""
    with tempfile.TemporaryDirectory(prefix="veil-redteam-") as host_tmp:
        out = run_confined(program(name, host_tmp), SECRET, limits=limits_for(name, base))
        left = list(Path(host_tmp).iterdir())
    contained = out.result is None and out.status in CONTAINED and not left
    if name in SIGSYS:
        contained = contained and out.status == "killed" and out.signal == "SIGSYS"
    return out, contained


def run(base: Limits | None = None) -> dict[str, dict]:
    """Every attack's outcome and whether it was contained."""
    base = base or Limits(wall_s=60, pad_s=0, result_bytes=4096)
    report = {}
    for name in ATTACKS:
        out, contained = attempt(name, base)
        report[name] = {"status": out.status, "signal": out.signal, "contained": contained}
    return report
