"""Confined ML service benchmarks: confined vs native training, start-up, red team, load,
model extraction.

1. The same operator code (a 2-layer torch MLP, 40 epochs on 20,000 synthetic rows) run in
   a fresh unconfined process and confined (bubblewrap + rlimits + Landlock + seccomp), each
   from process start to model; rounds alternated, medians: ``confined_over_native``.
   ``startup_s``: a confined run of code that returns at once (sandbox and interpreter
   start, numpy/torch import); ``sandbox_overhead_s``: that minus the same unconfined.
2. Red team: every program of :mod:`veil.enclave.redteam`, contained or not.
3. Load: ``veil enclave serve`` on 127.0.0.1; 50 client threads, each with its own token and
   a lifetime budget of ``--budget`` rows, send one-row queries for ``--seconds``: requests
   answered per second, p99 latency, errors (anything but 200/429), and whether every client
   got exactly its budget answered.
4. Extraction (Tramèr et al. 2016): a logistic regression trained confined; the attacker
   queries random points with label-only answers and fits its own logistic regression;
   agreement with the target on fresh points, at 100 and 1,000 queries.

Writes benchmarks/results/enclave.json: confined_over_native, startup_s, redteam_total,
redteam_contained, load_requests, load_errors, load_p99_ms,
extraction_agreement_label_only_1000 (and more).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

import common
from veil.enclave import redteam
from veil.enclave.sandbox import Limits, run_confined

TRAIN = """
import numpy as np
import torch

def train(data):
    torch.manual_seed(0)
    rows = np.frombuffer(data, dtype=np.float32).reshape(-1, 21)
    x, y = torch.from_numpy(rows[:, :20].copy()), torch.from_numpy(rows[:, 20].copy()).long()
    model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(EPOCHS):
        for i in range(0, len(x), 128):
            loss = torch.nn.functional.cross_entropy(model(x[i:i + 128]), y[i:i + 128])
            opt.zero_grad(); loss.backward(); opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()]).numpy().tobytes()
"""
NOTHING = "def train(data):\n    return b''\n"
LOGISTIC = """
import numpy as np

def train(data):
    rows = np.frombuffer(data, dtype=np.float32).reshape(-1, 11)
    x, y = rows[:, :10], rows[:, 10]
    w = np.zeros(11)
    xb = np.c_[x, np.ones(len(x))]
    for _ in range(500):
        p = 1 / (1 + np.exp(-xb @ w))
        w -= 0.5 * xb.T @ (p - y) / len(y)
    return w.astype(np.float32).tobytes()

def load(blob):
    return np.frombuffer(blob, dtype=np.float32)

def predict(w, request):
    x = np.frombuffer(request, dtype=np.float32).reshape(-1, 10)
    s = x @ w[:10] + w[10]
    return np.stack([-s, s], axis=1).astype(np.float32).tobytes()
"""


def synthetic(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=d)
    y = (x @ w + 0.3 * rng.normal(size=n) > 0).astype(np.float32)
    return x, y


NATIVE = """
import sys
import numpy, torch
ns = {}
exec(compile(open(sys.argv[1]).read(), "operator", "exec"), ns)
ns["train"](sys.stdin.buffer.read())
"""


def native_run(code_file: Path, data: bytes) -> None:
    """The same code on the same data in a fresh, unconfined process (same interpreter)."""
    env = {"PATH": "/usr/bin:/bin"}  # as bare as the sandbox's (--clearenv)
    subprocess.run([sys.executable, "-I", "-c", NATIVE, str(code_file)], input=data, check=True,
                   env=env)  # fmt: skip


def _ok(outcome):
    if outcome.status != "ok":
        raise RuntimeError(f"the confined run ended {outcome.status}")
    return outcome


def confined_vs_native(epochs: int, rounds: int, folder: Path) -> dict:
    """Fresh processes on both sides: the first training call in a process pays torch's
    lazy set-up (about 0.8 s here), so an in-process warm call would not be comparable."""
    x, y = synthetic(20_000, 20)
    data = np.c_[x, y].astype(np.float32).tobytes()
    code = TRAIN.replace("EPOCHS", str(epochs))
    (folder / "train.py").write_text(code)
    (folder / "nothing.py").write_text(NOTHING)
    limits = Limits(wall_s=600, cpu_s=600, pad_s=0, result_bytes=1 << 16)
    run_confined(NOTHING, b"", limits=limits)  # warm the file cache
    steps = {
        "native": lambda: native_run(folder / "train.py", data),
        "confined": lambda: _ok(run_confined(code, data, limits=limits)),
        "native_start": lambda: native_run(folder / "nothing.py", b""),
        "confined_start": lambda: run_confined(NOTHING, b"", limits=limits),
    }
    times = common.round_robin(steps, rounds=rounds)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "native_s": med["native"], "confined_s": med["confined"],
        "confined_over_native": med["confined"] / med["native"],
        "startup_s": med["confined_start"],
        "sandbox_overhead_s": med["confined_start"] - med["native_start"],
        "rounds": rounds, "epochs": epochs,
    }  # fmt: skip


def load_test(folder: Path, seconds: float, clients: int, budget: int) -> dict:
    import httpx

    from veil.enclave.client import Client, policy_from
    from veil.enclave.client import service as enclave_service

    options = {"clients": clients, "rows": budget, "rate": 10000, "workers": 2}
    with enclave_service(folder, **options) as service:
        tokens = json.loads((folder / "tokens.json").read_text())
        owner = Client(service.url, tokens["owner"][0])
        key = os.urandom(32)
        x, y = synthetic(2000, 10)
        owner.attest_and_release("load", key, policy_from(folder))
        owner.upload("load", np.c_[x, y].astype(np.float32).tobytes(), key)
        job = Client(service.url, tokens["operator"][0]).submit("load", LOGISTIC, 2)
        url = f"/v1/models/{job['model']}/query"
        results = [{"ok": 0, "refused": 0, "errors": 0, "lat": []} for _ in range(clients)]
        stop = time.monotonic() + seconds

        def client(i: int) -> None:
            r = results[i]
            with httpx.Client(
                base_url=service.url,
                timeout=30,
                headers={"authorization": f"Bearer {tokens['client'][i]}"},
            ) as h:
                row = {"rows": x[i : i + 1].tolist()}
                while time.monotonic() < stop:
                    t = time.perf_counter()
                    try:
                        code = h.post(url, json=row).status_code
                    except httpx.HTTPError:
                        code = 0
                    r["lat"].append(time.perf_counter() - t)
                    key = "ok" if code == 200 else "refused" if code == 429 else "errors"
                    r[key] += 1

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - start
    lat = np.concatenate([r["lat"] for r in results]) * 1000
    answered = sum(r["ok"] for r in results)
    exhausted = [r for r in results if r["refused"]]
    return {
        "clients": clients, "seconds": round(wall, 1), "budget_rows": budget,
        "load_requests": int(len(lat)), "answered": answered,
        "answered_per_s": answered / wall, "requests_per_s": len(lat) / wall,
        "load_errors": sum(r["errors"] for r in results),
        "load_p50_ms": float(np.percentile(lat, 50)), "load_p99_ms": float(np.percentile(lat, 99)),
        "clients_exhausted": len(exhausted),
        "budgets_exact": all(r["ok"] == budget for r in exhausted)
        and all(r["ok"] <= budget for r in results),
    }  # fmt: skip


def extraction(queries: tuple[int, ...]) -> dict:
    """Label-only extraction of a confined logistic regression (in-process runtime)."""
    import tempfile

    from veil.enclave.attest import Policy, SimulatedBackend
    from veil.enclave.broker import KeyBroker
    from veil.enclave.chunks import seal
    from veil.enclave.runtime import Runtime

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "rt.py").write_text("runtime")
        backend = SimulatedBackend([tmp / "rt.py"], b"bench", tmp / "platform")
        runtime = Runtime(backend, tmp / "store", Limits(pad_s=0, result_bytes=1 << 16), 1)
        key = os.urandom(32)
        trusted = Policy(frozenset({backend.measure().hex()}),
                         frozenset({backend.platform_key().hex()}))  # fmt: skip
        broker = KeyBroker(key, trusted)
        nonce = broker.challenge()
        runtime.install_key("d", broker.release(*runtime.attest(nonce), nonce))
        x, y = synthetic(5000, 10)
        runtime.add_data("d", seal(np.c_[x, y].astype(np.float32).tobytes(), key, "d"))
        model = runtime.train("d", LOGISTIC, 2)["model"]
        rng = np.random.default_rng(1)
        test = rng.normal(size=(5000, 10)).astype(np.float32)
        truth = np.array(runtime.query(model, test[:1000])["labels"] + runtime.query(
            model, test[1000:2000])["labels"])  # fmt: skip
        for n in queries:
            probe = rng.normal(size=(n, 10)).astype(np.float32)
            labels = np.concatenate([runtime.query(model, probe[i : i + 1000])["labels"]
                                     for i in range(0, n, 1000)])  # fmt: skip
            from sklearn.linear_model import LogisticRegression

            stolen = LogisticRegression(C=100, max_iter=2000).fit(probe, labels)
            out[f"extraction_agreement_label_only_{n}"] = float(
                np.mean(stolen.predict(test[:2000]) == truth)
            )
        runtime.close()
    return out


def main() -> None:
    p = common.parser("enclave", __doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--budget", type=int, default=300, help="rows each load client may ask")
    args = p.parse_args()
    epochs, rounds, seconds = (4, 2, 5.0) if args.quick else (40, 5, args.seconds)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        res = confined_vs_native(epochs, rounds, Path(tmp))
    team = redteam.run()
    res["redteam"] = team
    res["redteam_total"] = len(team)
    res["redteam_contained"] = sum(v["contained"] for v in team.values())
    with tempfile.TemporaryDirectory() as tmp:
        res.update(load_test(Path(tmp) / "svc", seconds, 50, args.budget))
    res.update(extraction((100, 1000)))
    common.write_results("enclave", res, args, "torch", "fastapi", "uvicorn")


if __name__ == "__main__":
    main()
