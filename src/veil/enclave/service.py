"""``veil enclave serve``: the confined ML service over HTTP (FastAPI on uvicorn).

Three roles, each with its own bearer token (written once, 0600, to the service folder):
the data **owner** attests the enclave, releases its data key and uploads sealed data; the
**operator** submits training code; **clients** (and the owner) query models. Every answer
is a label (rounded top-k scores only if the service allows it); each client has a request
rate limit and a lifetime budget of answered rows (429 once spent, for good). Every request
that changes or reads anything is appended to a hash-chained audit log whose head the
runtime signs (Ed25519) for the owner. Bodies over ``max_mb`` are refused (413).
"""

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from veil.enclave.runtime import EnclaveError, Runtime

ROLES = ("owner", "operator", "client")


@dataclass
class Budget:
    """Per client: at most ``rate`` requests per second (burst ``burst``), ``rows`` in all."""

    rate: float = 50.0
    burst: int = 100
    rows: int = 10_000


@dataclass
class _Account:
    role: str
    tokens: float
    rows_left: int
    last: float = field(default_factory=time.monotonic)


class AuditLog:
    """Append-only, hash-chained entries; ``head()`` is signed by the runtime's key."""

    def __init__(self):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        self._key = Ed25519PrivateKey.generate()
        self.entries: list[dict] = []
        self._hash = hashlib.sha256(b"veil-audit-v1").hexdigest()
        self._lock = threading.Lock()

    def add(self, who: str, action: str, **facts) -> None:
        with self._lock:
            entry = {"i": len(self.entries), "time": round(time.time(), 3), "who": who,
                     "action": action, "facts": facts, "prev": self._hash}  # fmt: skip
            self._hash = hashlib.sha256(json.dumps(entry, sort_keys=True).encode()).hexdigest()
            entry["hash"] = self._hash
            self.entries.append(entry)

    def public_key(self) -> str:
        from veil.protect.keys import public_bytes

        return public_bytes(self._key.public_key()).hex()

    def head(self) -> dict:
        with self._lock:
            body = f"veil-audit-head\x00{len(self.entries)}\x00{self._hash}".encode()
            return {
                "count": len(self.entries),
                "hash": self._hash,
                "signature": self._key.sign(body).hex(),
                "public_key": self.public_key(),
            }


def verify_log(entries: list[dict], head: dict) -> None:
    """Raise ValueError unless ``entries`` chain to ``head`` and its signature verifies."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    prev = hashlib.sha256(b"veil-audit-v1").hexdigest()
    for e in entries:
        body = {k: v for k, v in e.items() if k != "hash"}
        if body.get("prev") != prev:
            raise ValueError(f"audit entry {e.get('i')} does not follow the one before it")
        prev = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        if e.get("hash") != prev:
            raise ValueError(f"audit entry {e.get('i')} was altered")
    if head["count"] != len(entries) or head["hash"] != prev:
        raise ValueError("the log does not end at the signed head (entries dropped or added)")
    msg = f"veil-audit-head\x00{head['count']}\x00{head['hash']}".encode()
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(head["public_key"])).verify(
        bytes.fromhex(head["signature"]), msg
    )


def create_app(runtime: Runtime, tokens: dict[str, str], budget: Budget | None = None,
               allow_top_k: bool = False, max_mb: int = 64):  # fmt: skip
    """The FastAPI app; ``tokens`` maps each bearer token to its role."""
    from fastapi import FastAPI, HTTPException, Request

    budget = budget or Budget()
    log = AuditLog()
    accounts = {t: _Account(role, budget.burst, budget.rows) for t, role in tokens.items()}
    lock = threading.Lock()
    app = FastAPI(title="veil enclave", version="1",
                  description=__doc__.split("\n\n")[1].replace("\n", " "))  # fmt: skip

    def who(request: Request, *roles: str) -> tuple[_Account, str]:
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip()
        account = next((a for t, a in accounts.items() if hmac.compare_digest(t, token)), None)
        if account is None:
            raise HTTPException(401, "missing or unknown bearer token")
        if account.role not in roles:
            raise HTTPException(403, f"a {account.role} token cannot do this")
        return account, f"{account.role}:{hashlib.sha256(token.encode()).hexdigest()[:8]}"

    async def body(request: Request) -> bytes:
        size = int(request.headers.get("content-length") or 0)
        if size > max_mb << 20:
            raise HTTPException(413, f"body over {max_mb} MB")
        data = await request.body()
        if len(data) > max_mb << 20:
            raise HTTPException(413, f"body over {max_mb} MB")
        return data

    def refuse(e: Exception) -> HTTPException:
        return HTTPException(400, str(e))

    @app.get("/v1/attestation", summary="Quote binding the enclave key to the owner's nonce")
    def attestation(request: Request, nonce: str) -> dict:
        _, me = who(request, "owner")
        try:
            evidence, key = runtime.attest(bytes.fromhex(nonce))
        except ValueError as e:
            raise refuse(e) from e
        log.add(me, "attest")
        return {"evidence": evidence.to_json(), "enclave_key": key.hex(),
                "audit_key": log.public_key()}  # fmt: skip

    @app.put("/v1/datasets/{name}/key", summary="Release the data key (wrapped for the enclave)")
    async def put_key(name: str, request: Request) -> dict:
        _, me = who(request, "owner")
        try:
            runtime.install_key(name, await body(request))
        except Exception as e:  # noqa: BLE001
            raise refuse(e) from e
        log.add(me, "key", dataset=name)
        return {"dataset": name, "key": "installed"}

    @app.put("/v1/datasets/{name}", summary="Upload sealed data (AES-256-GCM chunks)")
    async def put_data(name: str, request: Request) -> dict:
        _, me = who(request, "owner")
        data = await body(request)
        try:
            size = runtime.add_data(name, data)
        except Exception as e:  # noqa: BLE001
            raise refuse(e) from e
        log.add(me, "upload", dataset=name, bytes=size)
        return {"dataset": name, "bytes": size}

    @app.post("/v1/jobs", summary="Train confined on a data set (or on several, with rounds)")
    async def submit(request: Request) -> dict:
        _, me = who(request, "operator")
        try:
            doc = json.loads(await body(request))
            names = doc["dataset"] if isinstance(doc["dataset"], list) else str(doc["dataset"])
            rounds = int(doc.get("rounds", 0))
            job = runtime.train(names, str(doc["code"]), int(doc["classes"]), rounds)
        except (KeyError, TypeError, ValueError, EnclaveError) as e:
            raise refuse(e) from e
        log.add(me, "train", dataset=names, rounds=rounds, status=job["status"], model=job["model"])
        return job

    @app.post("/v1/models/{model}/query", summary="Labels (or rounded top-k) for rows")
    async def query(model: str, request: Request) -> dict:
        account, me = who(request, "client", "owner")
        try:
            doc = json.loads(await body(request))
            rows = np.asarray(doc["rows"], dtype=np.float32)
            top_k = int(doc.get("top_k", 0))
        except (KeyError, TypeError, ValueError) as e:
            raise refuse(e) from e
        if top_k and not allow_top_k:
            raise HTTPException(403, "this service answers labels only")
        with lock:
            now = time.monotonic()
            account.tokens = min(budget.burst, account.tokens + (now - account.last) * budget.rate)
            account.last = now
            n = len(rows) if rows.ndim == 2 else 1
            if account.rows_left < n:
                raise HTTPException(429, "query budget spent")
            if account.tokens < 1:
                raise HTTPException(429, "rate limit: slow down")
            account.tokens -= 1
            account.rows_left -= n
        try:
            answer = runtime.query(model, rows, top_k)
        except EnclaveError as e:
            raise refuse(e) from e
        log.add(me, "query", model=model, rows=n)
        return answer

    @app.get("/v1/audit", summary="The audit log and its signed head")
    def audit(request: Request) -> dict:
        who(request, "owner")
        return {"entries": list(log.entries), "head": log.head()}

    app.state.log = log
    return app


def guarantees(platform: dict, audit: dict, step: str = "") -> list:
    """Ledger entries for a confined service: what holds, on which platform, with what log.

    ``platform`` is the service's ``platform.json``; ``audit`` its verified ``/v1/audit``."""
    from veil.core.guarantees import Guarantee

    simulated = platform.get("platform") == "simulated"
    settings = platform.get("settings", {})
    where = ("a simulated platform (no SGX/SEV/TDX here): quotes are signed by a key on the "
             "machine, whose root can forge them and read the runtime's memory"
             if simulated else f"platform {platform.get('platform')}")  # fmt: skip
    common = {
        "measurement": platform["measurement"],
        "platform": platform.get("platform"),
        "audit_entries": audit["head"]["count"],
        "audit_head": audit["head"]["hash"],
    }
    queries = sum(1 for e in audit["entries"] if e["action"] == "query")
    return [
        Guarantee(
            guarantee="training-data",
            mechanism="confined training (bubblewrap + seccomp + Landlock) on sealed data",
            claim="the operator's code saw the records only inside the sandbox, with no way "
            "out but one fixed-size record; the records are decrypted only in the runtime",
            threat_model=f"Untrusted operator code (confinement: real). The machine: {where}.",
            parameters={
                **common,
                "status_of_confidentiality": "simulated" if simulated else "hardware",
            },
            status="claimed",
            step=step,
        ),
        Guarantee(
            guarantee="model",
            mechanism="model sealed to the runtime's measurement; black-box answers",
            claim="neither owner nor operator receives the model or its structure; clients get "
            + ("rounded top-k scores" if settings.get("allow_top_k") else "labels only")
            + f", at most {settings.get('rows')} rows each",
            threat_model=f"Clients and the owner querying the model. The machine: {where}. "
            "Label-only answers still allow some extraction (see BENCHMARKS: extraction).",
            parameters={
                **common,
                "rows_budget": settings.get("rows"),
                "rate_per_s": settings.get("rate"),
            },  # fmt: skip
            numbers={"queries": queries},
            status="claimed",
            step=step,
        ),
    ]
