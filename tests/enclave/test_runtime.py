"""The trusted runtime end to end: attest, release the key, upload, train confined, query."""

import shutil

import numpy as np
import pytest

from veil.enclave.attest import Policy, SimulatedBackend
from veil.enclave.broker import KeyBroker
from veil.enclave.chunks import seal
from veil.enclave.runtime import EnclaveError, Runtime
from veil.enclave.sandbox import Limits

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap missing")

OPERATOR = """
import numpy as np
import torch

def train(data):
    rows = np.frombuffer(data, dtype=np.float32).reshape(-1, 5)
    x, y = torch.from_numpy(rows[:, :4].copy()), torch.from_numpy(rows[:, 4].copy()).long()
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(100):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
    return torch.cat([model.weight.detach().flatten(), model.bias.detach()]).numpy().tobytes()

def load(blob):
    w = np.frombuffer(blob, dtype=np.float32)
    return w[:12].reshape(3, 4), w[12:]

def predict(state, request):
    w, b = state
    x = np.frombuffer(request, dtype=np.float32).reshape(-1, 4)
    return (x @ w.T + b).astype(np.float32).tobytes()
"""


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = np.argmax(x[:, :3], axis=1).astype(np.float32)
    return x, y, np.column_stack([x, y]).astype(np.float32).tobytes()


def test_owner_operator_and_client_see_only_what_they_should(tmp_path):
    (tmp_path / "rt.py").write_text("runtime")
    backend = SimulatedBackend([tmp_path / "rt.py"], b"policy", tmp_path / "platform")
    runtime = Runtime(
        backend, tmp_path / "store", Limits(wall_s=60, pad_s=0.1, result_bytes=4096), workers=1
    )
    data_key = bytes(range(32))
    policy = Policy(frozenset({backend.measure().hex()}), frozenset({backend.platform_key().hex()}))
    broker = KeyBroker(data_key, policy)
    nonce = broker.challenge()
    evidence, enclave_key = runtime.attest(nonce)
    runtime.install_key("clinic", broker.release(evidence, enclave_key, nonce))
    x, y, raw = _data()
    runtime.add_data("clinic", seal(raw, data_key, label="clinic", chunk_size=1000))
    job = runtime.train("clinic", OPERATOR, classes=3)
    assert job["status"] == "ok" and set(job) == {"status", "seconds", "model"}
    stored = b"".join(p.read_bytes() for p in (tmp_path / "store").rglob("*") if p.is_file())
    assert raw[:64] not in stored and b"torch.nn.Linear" not in stored  # sealed at rest
    answer = runtime.query(job["model"], x[:50])
    assert set(answer) == {"labels"} and np.mean(np.array(answer["labels"]) == y[:50]) > 0.9
    top = runtime.query(job["model"], x[:2], top_k=2)["top"]
    assert len(top[0]) == 2 and all(round(p, 2) == p for _, p in top[0])
    with pytest.raises(EnclaveError, match="no model"):
        runtime.query("feedface", x[:1])
    with pytest.raises(EnclaveError, match="no released key"):
        runtime.train("other", OPERATOR, classes=3)
    runtime.close()


def test_several_sites_train_one_model_then_answer(tmp_path):
    from .test_distributed import LOGISTIC

    serving = (
        LOGISTIC
        + """
def load(blob):
    return np.frombuffer(blob, dtype=np.float32)

def predict(w, request):
    x = np.frombuffer(request, dtype=np.float32).reshape(-1, 3)
    s = x @ w[:3] + w[3]
    return np.stack([-s, s], axis=1).astype(np.float32).tobytes()
"""
    )
    (tmp_path / "rt.py").write_text("runtime")
    backend = SimulatedBackend([tmp_path / "rt.py"], b"policy", tmp_path / "platform")
    runtime = Runtime(backend, tmp_path / "store", Limits(wall_s=60, pad_s=0, result_bytes=4096), 1)
    policy = Policy(frozenset({backend.measure().hex()}), frozenset({backend.platform_key().hex()}))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 3)).astype(np.float32)
    y = (x @ np.array([2.0, -1.0, 0.5]) > 0).astype(np.float32)
    for i, part in enumerate(np.array_split(np.c_[x, y].astype(np.float32), 3)):
        key = bytes([i + 1]) * 32
        broker = KeyBroker(key, policy)
        nonce = broker.challenge()
        runtime.install_key(f"site{i}", broker.release(*runtime.attest(nonce), nonce))
        runtime.add_data(f"site{i}", seal(part.tobytes(), key, label=f"site{i}"))
    job = runtime.train(["site0", "site1", "site2"], serving, classes=2, rounds=4)
    assert job["status"] == "ok"
    labels = np.array(runtime.query(job["model"], x[:200])["labels"])
    assert np.mean(labels == y[:200]) > 0.9
    with pytest.raises(EnclaveError, match="rounds"):
        runtime.train(["site0", "site1"], serving, classes=2)
    runtime.close()
