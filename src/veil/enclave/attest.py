"""Attestation: what runs (measurement), who vouches for it (quote), and keys bound to it.

A :class:`Backend` gives ``measure()``, ``quote(report_data)``, ``verify(evidence, policy,
report_data)`` and ``seal``/``unseal`` bound to the measurement. This machine has no SGX,
SEV-SNP or TDX, so :class:`SimulatedBackend` plays the hardware: an Ed25519 "platform key"
signs quotes, and the measurement is the SHA-256 of the trusted runtime's files and the
policy. Everything above the backend (key broker, sealed data, service) is the real protocol.

How real hardware fills the same interface:

- ``GramineSGXBackend``: ``measure()`` is MRENCLAVE of the Gramine manifest (runtime files and
  policy are listed in it as trusted files); ``quote()`` writes the 64-byte report data to
  ``/dev/attestation/user_report_data`` and reads ``/dev/attestation/quote`` (DCAP);
  ``verify()`` checks the quote with Intel's DCAP quote verification library and collateral
  (PCK chain to Intel's root) and compares MRENCLAVE/MRSIGNER with the policy;
  ``seal``/``unseal`` use Gramine's ``/dev/attestation/keys/_sgx_mrenclave``.
- ``ConfidentialVMBackend`` (AMD SEV-SNP or Intel TDX through Linux configfs-tsm):
  ``quote()`` creates ``/sys/kernel/config/tsm/report/<name>``, writes ``inblob`` (the report
  data) and reads ``outblob``; the measurement is the launch digest (SNP) or MRTD/RTMRs (TDX)
  of the VM image that holds the runtime; ``verify()`` checks the VCEK/VLEK chain to AMD's
  ARK (or Intel's) and the measurement; sealing derives keys from
  ``/dev/sev-guest`` MSG_KEY_REQ (SNP) or a key broker that releases only after attestation.

Threat model of the simulation: the platform key sits on this machine, so anyone with root
here can forge quotes and read the runtime's memory. Confinement of untrusted code (the
sandbox) is real; confidentiality from the machine's operator is not, and every report says
so.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from veil.core.errors import VeilError

REPORT_DATA = 64


class AttestationError(VeilError):
    """Evidence that does not verify, or data sealed under another measurement."""


@dataclass(frozen=True)
class Evidence:
    """A quote: the platform vouches that ``measurement`` runs and chose ``report_data``."""

    platform: str
    measurement: bytes
    report_data: bytes
    platform_key: bytes
    signature: bytes = b""

    def body(self) -> bytes:
        return b"veil-quote-v1\x00" + json.dumps(
            {"platform": self.platform, "measurement": self.measurement.hex(),
             "report_data": self.report_data.hex(), "platform_key": self.platform_key.hex()},
            sort_keys=True,
        ).encode()  # fmt: skip

    def to_json(self) -> dict:
        return {"platform": self.platform, "measurement": self.measurement.hex(),
                "report_data": self.report_data.hex(), "platform_key": self.platform_key.hex(),
                "signature": self.signature.hex()}  # fmt: skip

    @classmethod
    def from_json(cls, doc: dict) -> Evidence:
        try:
            ev = cls(str(doc["platform"]), bytes.fromhex(doc["measurement"]),
                     bytes.fromhex(doc["report_data"]), bytes.fromhex(doc["platform_key"]),
                     bytes.fromhex(doc["signature"]))  # fmt: skip
        except (KeyError, TypeError, ValueError) as e:
            raise AttestationError(f"malformed evidence ({e})") from e
        if len(ev.measurement) != 32 or len(ev.report_data) != REPORT_DATA:
            raise AttestationError("malformed evidence: bad measurement or report data size")
        return ev


@dataclass(frozen=True)
class Policy:
    """What a verifier accepts: platforms, their (root) keys, and allowed measurements."""

    measurements: frozenset[str]
    platform_keys: frozenset[str]
    platforms: frozenset[str] = field(default_factory=lambda: frozenset({"simulated"}))

    def to_json(self) -> dict:
        return {k: sorted(getattr(self, k)) for k in ("measurements", "platform_keys", "platforms")}

    @classmethod
    def from_json(cls, doc: dict) -> Policy:
        try:
            return cls(*(frozenset(map(str, doc[k])) for k in
                         ("measurements", "platform_keys", "platforms")))  # fmt: skip
        except (KeyError, TypeError) as e:
            raise AttestationError(f"malformed policy ({e})") from e


def report_data(enclave_key: bytes, nonce: bytes) -> bytes:
    """What a quote must carry: a hash of the enclave's public key and the verifier's nonce."""
    return hashlib.sha512(b"veil-report-data-v1\x00" + enclave_key + nonce).digest()


def measure_files(files: Iterable[Path], policy: bytes) -> bytes:
    """SHA-256 over each runtime file (name, size, contents, in name order) and the policy."""
    h = hashlib.sha256(b"veil-measurement-v1\x00")
    for path in sorted(Path(p) for p in files):
        data = path.read_bytes()
        h.update(path.name.encode() + b"\x00" + len(data).to_bytes(8, "big") + data)
    h.update(b"policy\x00" + policy)
    return h.digest()


class Backend(ABC):
    """A trusted-execution platform, as the runtime and the verifier see it."""

    name: str

    @abstractmethod
    def measure(self) -> bytes: ...

    @abstractmethod
    def quote(self, report_data: bytes) -> Evidence: ...

    @abstractmethod
    def seal(self, data: bytes) -> bytes: ...

    @abstractmethod
    def unseal(self, blob: bytes) -> bytes: ...

    @staticmethod
    def verify(evidence: Evidence, policy: Policy, expected_report_data: bytes) -> None:
        """Raise :class:`AttestationError` unless ``evidence`` is signed by a trusted platform
        key, names an allowed measurement and carries ``expected_report_data``."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        if evidence.platform not in policy.platforms:
            raise AttestationError(f"platform {evidence.platform!r} is not trusted by the policy")
        if evidence.platform_key.hex() not in policy.platform_keys:
            raise AttestationError(
                "the quote is signed by a platform key the policy does not trust"
            )
        try:
            Ed25519PublicKey.from_public_bytes(evidence.platform_key).verify(
                evidence.signature, evidence.body()
            )
        except (InvalidSignature, ValueError) as e:
            raise AttestationError(
                "the quote's signature does not verify (forged or altered)"
            ) from e
        if evidence.measurement.hex() not in policy.measurements:
            raise AttestationError(
                f"measurement {evidence.measurement.hex()[:16]}… is not in the policy's allow-list"
            )
        if not hmac.compare_digest(evidence.report_data, expected_report_data):
            raise AttestationError("the quote's report data does not match (replayed quote, "
                                   "another nonce or another enclave key)")  # fmt: skip


class SimulatedBackend(Backend):
    """Software stand-in for SGX/SNP/TDX (see the module's threat model)."""

    name = "simulated"

    def __init__(self, runtime_files: Iterable[Path], policy: bytes, platform_dir: Path):
        self._measurement = measure_files(runtime_files, policy)
        self._signing, self._root = _platform_secrets(Path(platform_dir))

    def measure(self) -> bytes:
        return self._measurement

    def platform_key(self) -> bytes:
        from cryptography.hazmat.primitives import serialization as ser

        return self._signing.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)

    def quote(self, report_data: bytes) -> Evidence:
        if len(report_data) != REPORT_DATA:
            raise AttestationError(f"report data must be {REPORT_DATA} bytes")
        ev = Evidence(self.name, self._measurement, report_data, self.platform_key())
        return Evidence(**{**ev.__dict__, "signature": self._signing.sign(ev.body())})

    def _seal_key(self) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        info = b"veil-seal-v1\x00" + self._measurement
        return HKDF(hashes.SHA256(), 32, salt=None, info=info).derive(self._root)

    def seal(self, data: bytes) -> bytes:
        """``data`` encrypted under a key only this measurement on this platform derives."""
        from veil.enclave.chunks import seal

        return seal(data, self._seal_key(), "sealed-by-enclave")

    def unseal(self, blob: bytes) -> bytes:
        from veil.enclave.chunks import ChunkError, open_sealed

        try:
            return open_sealed(blob, self._seal_key(), "sealed-by-enclave")
        except ChunkError as e:
            raise AttestationError(
                f"cannot unseal: sealed under another measurement or platform, or altered ({e})"
            ) from e


def _platform_secrets(folder: Path):
    """The simulated platform's Ed25519 signing key and sealing root, made once (0600)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder.mkdir(parents=True, exist_ok=True)
    key_file, root_file = folder / "platform.key", folder / "seal.root"
    for path in (key_file, root_file):
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(32))
    signing = Ed25519PrivateKey.from_private_bytes(key_file.read_bytes())
    return signing, root_file.read_bytes()
