"""Model keys released by a broker after (simulated) device attestation.

``veil model seal --broker`` encrypts a model under a fresh data key (AES-256-GCM chunks,
:mod:`veil.enclave.chunks`, labelled with the key's id) and hands the key to the model
owner's broker with the devices it may go to; the key is never stored beside the model. A
device that wants the model proves what it runs (:class:`Device`: a quote over a fresh
nonce and its in-memory X25519 key, :mod:`veil.enclave.attest`); the broker checks the quote
against the key's policy (trusted device platform keys and measurements) and returns the
data key wrapped for that one device key, bound to its measurement. The device decrypts the
model in memory.

Threat model: as :mod:`veil.enclave.attest` says, the device platform is simulated here (its
signing key sits in the device folder), so this shows the protocol, not hardware-rooted
trust. Once unsealed, the model is in the device's memory (ModelXRay's dynamic analysis).
"""

import json
import os
import secrets
import threading
from pathlib import Path

from veil.core.errors import VeilError
from veil.enclave.attest import AttestationError, Evidence, Policy, SimulatedBackend
from veil.enclave.broker import EnclaveKey, KeyBroker

LABEL = "veil-model:"


class BrokerError(VeilError):
    """A key that cannot be stored or released (the message says why)."""


# --- the broker service ------------------------------------------------------------------


def create_app(folder: Path, admin_token: str):
    """The broker's FastAPI app: the admin stores keys; devices ask for them with a quote."""
    import hmac

    from fastapi import FastAPI, HTTPException, Request

    from veil.core.io import atomic_write

    keys_dir = Path(folder) / "keys"
    keys_dir.mkdir(parents=True, exist_ok=True)
    brokers: dict[str, KeyBroker] = {}
    lock = threading.Lock()
    app = FastAPI(title="veil model key broker", version="1")

    def broker(key_id: str) -> KeyBroker:
        if not key_id.isalnum() or len(key_id) > 64:
            raise HTTPException(400, "bad key id")
        with lock:
            if key_id not in brokers:
                path = keys_dir / f"{key_id}.json"
                if not path.is_file():
                    raise HTTPException(404, f"no key {key_id}")
                doc = json.loads(path.read_text())
                brokers[key_id] = KeyBroker(bytes.fromhex(doc["key"]),
                                            Policy.from_json(doc["policy"]))  # fmt: skip
            return brokers[key_id]

    @app.post("/v1/keys", summary="Store a model's data key and the devices it may go to")
    async def store(request: Request) -> dict:
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(token, admin_token):
            raise HTTPException(401, "missing or unknown bearer token")
        try:
            doc = await request.json()
            key_id, key = str(doc["key_id"]), bytes.fromhex(doc["key"])
            policy = Policy.from_json(doc["policy"])
        except (KeyError, TypeError, ValueError, AttestationError) as e:
            raise HTTPException(400, f"bad key record ({e})") from e
        if not key_id.isalnum() or len(key) != 32:
            raise HTTPException(400, "key id must be alphanumeric and the key 32 bytes")
        path = keys_dir / f"{key_id}.json"
        if path.exists():
            raise HTTPException(409, f"key {key_id} exists")
        record = json.dumps({"key": key.hex(), "policy": policy.to_json()})
        atomic_write(path, record)
        os.chmod(path, 0o600)
        return {"key_id": key_id}

    @app.get("/v1/keys/{key_id}/challenge", summary="A fresh nonce for a device's quote")
    def challenge(key_id: str) -> dict:
        return {"nonce": broker(key_id).challenge().hex()}

    @app.post("/v1/keys/{key_id}/release", summary="The key, wrapped for an attested device")
    async def release(key_id: str, request: Request) -> dict:
        b = broker(key_id)
        try:
            doc = await request.json()
            evidence = Evidence.from_json(doc["evidence"])
            wrapped = b.release(evidence, bytes.fromhex(doc["device_key"]),
                                bytes.fromhex(doc["nonce"]))  # fmt: skip
        except AttestationError as e:
            raise HTTPException(403, str(e)) from e
        except (KeyError, TypeError, ValueError) as e:
            raise HTTPException(400, f"bad release request ({e})") from e
        return {"wrapped": wrapped.hex()}

    @app.get("/v1/health", summary="Liveness (admin only)")
    def health(request: Request) -> dict:
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(token, admin_token):
            raise HTTPException(401, "missing or unknown bearer token")
        return {"ok": True}

    return app


# --- the device and the owner ------------------------------------------------------------


class Device:
    """A device that loads broker-sealed models: its (simulated) platform lives in ``folder``."""

    def __init__(self, folder: Path):
        import veil.protect as pkg

        files = sorted(Path(pkg.__file__).parent.glob("*.py"))
        self.backend = SimulatedBackend(files, b"veil-model-device-v1", Path(folder))

    def identity(self) -> dict:
        """What the model owner needs to allow this device: platform key and measurement."""
        return {"platform_key": self.backend.platform_key().hex(),
                "measurement": self.backend.measure().hex()}  # fmt: skip

    def fetch_key(self, url: str, key_id: str) -> bytes:
        """Attest to the broker at ``url`` and receive the data key of ``key_id``."""
        nonce = bytes.fromhex(_call("GET", f"{url}/v1/keys/{key_id}/challenge")["nonce"])
        me = EnclaveKey()
        body = {"evidence": me.attest(self.backend, nonce).to_json(),
                "device_key": me.public().hex(), "nonce": nonce.hex()}  # fmt: skip
        wrapped = bytes.fromhex(
            _call("POST", f"{url}/v1/keys/{key_id}/release", json=body)["wrapped"]
        )
        return me.unwrap(wrapped, self.backend.measure())


def _call(method: str, url: str, token: str | None = None, **kw) -> dict:
    import httpx

    from veil.core.net import json_reply

    headers = {"authorization": f"Bearer {token}"} if token else {}
    send = lambda: httpx.request(method, url, headers=headers, timeout=60, **kw)  # noqa: E731
    return json_reply(send, "key broker", BrokerError)


def seal_with_broker(model: bytes, url: str, token: str, devices: list[dict]) -> bytes:
    """``model`` sealed under a fresh key that only the broker keeps, for ``devices``."""
    from veil.enclave.chunks import seal

    if not devices:
        raise BrokerError("name at least one device that may receive the key (--allow-device)")
    key, key_id = os.urandom(32), secrets.token_hex(8)
    policy = Policy(frozenset(d["measurement"] for d in devices),
                    frozenset(d["platform_key"] for d in devices))  # fmt: skip
    _call("POST", f"{url}/v1/keys", token,
          json={"key_id": key_id, "key": key.hex(), "policy": policy.to_json()})  # fmt: skip
    return seal(model, key, LABEL + key_id)


def unseal_with_broker(blob: bytes, url: str, device: Device) -> bytes:
    """A broker-sealed model, decrypted in memory after the device attests."""
    from veil.enclave.chunks import check_sealed, open_sealed

    label = check_sealed(blob)["label"]
    if not label.startswith(LABEL):
        raise BrokerError("not a broker-sealed model")
    key_id = label.removeprefix(LABEL)
    return open_sealed(blob, device.fetch_key(url, key_id), label)
