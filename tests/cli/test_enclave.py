"""``veil enclave``: a real service on 127.0.0.1 (stopped by PID), driven by the CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from veil.cli.main import main
from veil.core.guarantees import Ledger
from veil.enclave.client import service as enclave_service

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap missing")

OPERATOR = """
import numpy as np

def train(data):
    rows = np.frombuffer(data, dtype=np.float32).reshape(-1, 3)
    x, y = rows[:, :2], rows[:, 2]
    w = np.linalg.lstsq(np.c_[x, np.ones(len(x))], y * 2 - 1, rcond=None)[0]
    return w.astype(np.float32).tobytes()

def load(blob):
    return np.frombuffer(blob, dtype=np.float32)

def predict(w, request):
    x = np.frombuffer(request, dtype=np.float32).reshape(-1, 2)
    s = x @ w[:2] + w[2]
    return np.stack([-s, s], axis=1).astype(np.float32).tobytes()
"""


@pytest.fixture
def service(tmp_path):
    folder = tmp_path / "svc"
    with enclave_service(folder, rows=100, workers=1) as svc:
        yield folder, svc.url


def test_serve_upload_submit_query_audit(service, tmp_path, capsys):
    folder, url = service
    where = ["--folder", str(folder), "--url", url]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2)).astype(np.float32)
    y = (x[:, 0] > x[:, 1]).astype(np.float32)
    (tmp_path / "data.bin").write_bytes(np.c_[x, y].astype(np.float32).tobytes())
    (tmp_path / "op.py").write_text(OPERATOR)
    np.save(tmp_path / "rows.npy", x[:50])
    assert main(["enclave", "attest", *where]) == 0
    assert "attested: platform simulated" in capsys.readouterr().out
    key = tmp_path / "data.key"
    assert main(["enclave", "upload", str(tmp_path / "data.bin"), "--dataset", "ward",
                 "--key-file", str(key), *where]) == 0  # fmt: skip
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert main(["enclave", "submit", str(tmp_path / "op.py"), "--dataset", "ward",
                 "--classes", "2", *where]) == 0  # fmt: skip
    job = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert job["status"] == "ok"
    assert main(["enclave", "query", job["model"], str(tmp_path / "rows.npy"), *where]) == 0
    labels = np.array(json.loads(capsys.readouterr().out)["labels"])
    assert np.mean(labels == y[:50]) > 0.9
    assert main(["enclave", "query", job["model"], str(tmp_path / "rows.npy"), *where]) == 0
    assert main(["enclave", "query", job["model"], str(tmp_path / "rows.npy"), *where]) == 2
    assert "429" in capsys.readouterr().err  # 100 rows spent
    ledger = tmp_path / "ledger.json"
    assert main(["enclave", "audit-log", *where, "--ledger", str(ledger)]) == 0
    out = capsys.readouterr().out
    entries = {g.guarantee: g for g in Ledger.load(ledger).entries}
    assert set(entries) == {"training-data", "model"}
    assert entries["model"].numbers["queries"] == 2
    assert "simulated" in entries["training-data"].threat_model
    assert "signed, 7 entries verified" in out and "query" in out
    assert "upload" in out and "ward" in out
