"""Red team: untrusted code that tries to get data out or break confinement is contained
(killed, or refused with nothing out); honest code trains and returns its one record."""

from __future__ import annotations

import shutil
import socket
import threading

import pytest

from veil.enclave.redteam import ATTACKS, SECRET, attempt
from veil.enclave.sandbox import Limits, run_confined

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap missing")

FAST = Limits(wall_s=60, pad_s=0.25, result_bytes=4096)


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack_is_contained(attack):
    out, contained = attempt(attack, FAST)
    assert contained, (attack, out)
    if attack == "cpu":
        assert out.status == "killed" and out.signal in ("SIGXCPU", "SIGKILL"), out
    if attack == "wall-time":
        assert out.status == "timeout"


def _code(body: str) -> str:
    return "def train(data):\n    " + body.replace("\n", "\n    ") + "\n"


def test_tcp_to_a_loopback_listener_never_connects():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.2)
    port, got = server.getsockname()[1], []

    def accept():
        for _ in range(40):
            try:
                conn, _ = server.accept()
                got.append(conn.recv(100))
            except TimeoutError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    body = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}))\ns.sendall(data)"
    out = run_confined(_code(body + "\nreturn b'sent'"), SECRET, limits=FAST)
    t.join()
    server.close()
    assert out.status == "error" and out.result is None and got == []


def test_prints_go_nowhere_and_time_is_padded():
    body = "print(data)\nimport os, sys\nsys.stderr.write(repr(data))\n"
    body += "return b' '.join(os.readlink(f'/proc/self/fd/{fd}').encode() for fd in (1, 2))"
    out = run_confined(_code(body), SECRET, limits=FAST)
    assert out.status == "ok" and out.result == b"/dev/null /dev/null"
    assert out.seconds / FAST.pad_s == pytest.approx(round(out.seconds / FAST.pad_s), abs=1e-6)


def test_honest_training_runs_confined_and_returns_its_record():
    code = """
import io
import numpy as np
import torch

def train(data):
    rows = np.frombuffer(data, dtype=np.float32).reshape(-1, 5)
    x, y = torch.from_numpy(rows[:, :4].copy()), torch.from_numpy(rows[:, 4].copy()).long()
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(50):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
    open("/scratch/checkpoint", "wb").write(b"scratch is writable")
    acc = (model(x).argmax(1) == y).float().mean().item()
    w = torch.cat([p.detach().flatten() for p in model.parameters()]).numpy()
    return np.float32(acc).tobytes() + w.astype(np.float32).tobytes()
"""
    rng = __import__("numpy").random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("float32")
    data = __import__("numpy").column_stack([x, y]).astype("float32").tobytes()
    out = run_confined(code, data, limits=FAST)
    assert out.status == "ok", out
    acc = __import__("numpy").frombuffer(out.result[:4], dtype="float32")[0]
    assert acc > 0.9 and len(out.result) == 4 + 4 * (4 * 2 + 2)


SERVE = """
import numpy as np

def load(model):
    return np.frombuffer(model, dtype=np.float32).reshape(2, 2)

def predict(w, request):
    x = np.frombuffer(request, dtype=np.float32).reshape(-1, 2)
    if x.shape[0] > 100:
        return bytes(10_000)
    if x[0, 0] == 99:
        import os
        os.fork()
    return (x @ w).argmax(1).astype(np.uint8).tobytes()
"""


def test_confined_worker_answers_in_order_and_dies_on_an_attack():
    import numpy as np

    from veil.enclave.sandbox import ConfinedWorker

    w = np.array([[1, 0], [0, 1]], dtype=np.float32)
    with ConfinedWorker(SERVE, w.tobytes(), limits=FAST) as worker:
        x = np.array([[3, 1], [0, 2], [5, 4]], dtype=np.float32)
        out = worker.ask(x.tobytes())
        assert out.status == "ok" and list(out.result) == [0, 1, 0]
        assert worker.ask(np.zeros((200, 2), np.float32).tobytes()).status == "oversized"
        assert worker.ask(b"\x00" * 7).status == "error"  # not a whole number of rows
        assert worker.ask(x.tobytes()).result == out.result  # still serving
        attack = worker.ask(np.array([[99, 0]], dtype=np.float32).tobytes())
        assert attack.status == "killed" and attack.signal == "SIGSYS"
        assert worker.ask(x.tobytes()).status == "refused"  # dead stays dead
