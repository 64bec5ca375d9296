"""The trusted runtime of one (simulated) enclave: keys, sealed data, confined jobs, models.

It holds, in memory only: its enclave key, the data keys the owners' brokers released to it,
and the plaintext of data and models while a confined process uses them. On disk it keeps
only what is sealed: the owners' uploads (as they arrived) and each trained model and its
operator's code, sealed to this measurement (:meth:`Backend.seal`). Neither the owner nor
the operator ever gets a model or its structure: the owner gets answers to queries (labels,
or rounded top-k scores on request); the operator gets a job status.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from pathlib import Path

import numpy as np

from veil.core.errors import VeilError
from veil.core.io import atomic_write
from veil.enclave.attest import Backend, Evidence
from veil.enclave.broker import EnclaveKey
from veil.enclave.chunks import check_sealed, open_sealed
from veil.enclave.sandbox import ConfinedWorker, Limits, run_confined

NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


class EnclaveError(VeilError):
    """A request the runtime refuses (unknown data set or model, no key, bad input)."""


def _name(value: str, what: str) -> str:
    if not value or len(value) > 64 or not set(value.lower()) <= NAME_OK:
        raise EnclaveError(f"bad {what} name {value!r}: letters, digits, - and _ only")
    return value


class Runtime:
    """One enclave's runtime; thread-safe for the service that fronts it."""

    def __init__(self, backend: Backend, store: Path, limits: Limits | None = None,
                 workers: int = 2):  # fmt: skip
        self.backend, self.store = backend, Path(store)
        self.limits = limits or Limits()
        self.n_workers = workers
        self._key = EnclaveKey()
        self._data_keys: dict[str, bytes] = {}
        self._pools: dict[str, list[ConfinedWorker]] = {}
        self._next: dict[str, int] = {}
        self._lock = threading.Lock()
        for sub in ("data", "models"):
            (self.store / sub).mkdir(parents=True, exist_ok=True)

    # -- owner side: attestation, key, data --------------------------------------------------
    def attest(self, nonce: bytes) -> tuple[Evidence, bytes]:
        return self._key.attest(self.backend, nonce), self._key.public()

    def install_key(self, dataset: str, wrapped: bytes) -> None:
        key = self._key.unwrap(wrapped, self.backend.measure())
        with self._lock:
            self._data_keys[_name(dataset, "data set")] = key

    def add_data(self, dataset: str, sealed: bytes) -> int:
        check_sealed(sealed)  # a sealed-data file, or an error now
        atomic_write(self.store / "data" / f"{_name(dataset, 'data set')}.sealed", sealed)
        return len(sealed)

    # -- operator side: training ----------------------------------------------------------
    def _open(self, dataset: str) -> bytes:
        """A data set's plaintext, in memory only."""
        path = self.store / "data" / f"{_name(dataset, 'data set')}.sealed"
        with self._lock:
            key = self._data_keys.get(dataset)
        if key is None or not path.is_file():
            raise EnclaveError(f"data set {dataset!r} has no released key or no upload yet")
        return open_sealed(path.read_bytes(), key, label=dataset)

    def train(self, datasets: str | list[str], code: str, classes: int, rounds: int = 0) -> dict:
        """Run the operator's ``code`` confined on the data; seal the model it returns.

        One data set: ``train(data)`` in one confined run. Several (one per site) with
        ``rounds`` > 0: one confined worker per data set and this runtime as their parameter
        server (:func:`veil.enclave.distributed.train_distributed`). Returns the model id and
        the job's status only."""
        names = [datasets] if isinstance(datasets, str) else list(datasets)
        if not 2 <= classes <= 1000:
            raise EnclaveError("classes must be between 2 and 1000")
        if not names or (len(names) > 1 and rounds < 1):
            raise EnclaveError("training on several data sets needs rounds >= 1")
        data = [self._open(n) for n in names]
        start = time.monotonic()
        if rounds:
            from veil.enclave.distributed import DistributedError, train_distributed

            try:
                model, _ = train_distributed(code, data, rounds, self.limits)
                status = "ok"
            except DistributedError:
                model, status = None, "error"
        else:
            out = run_confined(code, data[0], "train", self.limits)
            model, status = out.result, out.status
        job = {"status": status, "seconds": round(time.monotonic() - start, 3), "model": None}
        if status == "ok":
            model_id = secrets.token_hex(8)
            meta = json.dumps({"classes": classes, "datasets": names, "rounds": rounds}).encode()
            for suffix, blob in (("model", model), ("code", code.encode()), ("meta", meta)):
                (self.store / "models" / f"{model_id}.{suffix}").write_bytes(
                    self.backend.seal(blob)
                )
            job["model"] = model_id
        return job

    # -- owner side: black-box queries ----------------------------------------------------
    def _serving(self, model: str) -> tuple[ConfinedWorker, int]:
        """A worker of the model's pool (round robin) and its class count; the model, its
        code and facts are unsealed once, when the model is first asked."""
        with self._lock:
            if model not in self._pools:
                base = self.store / "models" / _name(model, "model")
                if not base.with_suffix(".meta").is_file():
                    raise EnclaveError(f"no model {model!r}")
                meta = json.loads(self.backend.unseal(base.with_suffix(".meta").read_bytes()))
                code = self.backend.unseal(base.with_suffix(".code").read_bytes()).decode()
                weights = self.backend.unseal(base.with_suffix(".model").read_bytes())
                pool = [ConfinedWorker(code, weights, "predict", self.limits)
                        for _ in range(self.n_workers)]  # fmt: skip
                self._pools[model] = (pool, int(meta["classes"]))
                self._next[model] = 0
            pool, classes = self._pools[model]
            i = self._next[model] = (self._next[model] + 1) % len(pool)
            return pool[i], classes

    def query(self, model: str, rows: np.ndarray, top_k: int = 0) -> dict:
        """Labels of ``rows`` (float32, one per row), or with ``top_k`` > 0 the k best
        classes and their scores rounded to 2 decimals. Never raw scores or the model."""
        worker, classes = self._serving(model)
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if rows.ndim != 2 or not 1 <= len(rows) <= 1000:
            raise EnclaveError("send 1 to 1000 rows of features")
        out = worker.ask(rows.tobytes())
        if out.status != "ok" or len(out.result) != 4 * classes * len(rows):
            raise EnclaveError(f"the model could not answer ({out.status})")
        scores = np.frombuffer(out.result, dtype=np.float32).reshape(len(rows), classes)
        labels = scores.argmax(1)
        if top_k <= 0:
            return {"labels": labels.tolist()}
        z = np.exp(scores - scores.max(1, keepdims=True))
        p = z / z.sum(1, keepdims=True)
        best = np.argsort(-p, axis=1)[:, :top_k]
        return {
            "labels": labels.tolist(),
            "top": [
                [[int(c), round(float(p[i, c]), 2)] for c in best[i]] for i in range(len(rows))
            ],
        }

    def close(self) -> None:
        with self._lock:
            for pool, _ in self._pools.values():
                for w in pool:
                    w.close()
            self._pools.clear()
