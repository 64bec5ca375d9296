"""Sealed model files: AES-256-GCM over the model, the data key wrapped for one recipient.

A fresh 256-bit data key encrypts the whole model file (AES-256-GCM, the sealed header as
associated data). The data key is wrapped for the recipient's X25519 public key: an
ephemeral X25519 exchange, HKDF-SHA256 over both public keys, AES-256-GCM. Nothing beside
the sealed file can open it; only the holder of the recipient's private key can, and
``unseal`` decrypts into memory only. Any change to any byte is rejected (GCM tags).

Threat model: whoever holds the sealed file but not the recipient's private key learns
only the model's size; a device that unseals holds the plain model in memory (as
ModelXRay's dynamic analysis exploited): sealing protects files at rest and in transit.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from veil.core.errors import VeilError, refuse_overwrite
from veil.protect import keys

MAGIC = b"VEILSEAL"
VERSION = 1
NONCE = 12


class SealError(VeilError):
    """A sealed file that is not one, is tampered, or is sealed for another key."""


def _kek(shared: bytes, ephemeral_pub: bytes, recipient_pub: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    info = b"veil seal v1 key wrap" + ephemeral_pub + recipient_pub
    return HKDF(hashes.SHA256(), 32, salt=None, info=info).derive(shared)


def seal_bytes(payload: bytes, recipient_pub, associated: bytes = b"") -> bytes:
    """``payload`` sealed for the holder of the private key matching ``recipient_pub``.

    ``associated`` data is authenticated, not stored: unsealing needs the same bytes (the
    enclave key broker binds a wrapped key to the enclave's measurement this way)."""
    from cryptography.hazmat.primitives.asymmetric import x25519
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    data_key = AESGCM.generate_key(bit_length=256)
    ephemeral = x25519.X25519PrivateKey.generate()
    eph_pub, rec_pub = keys.public_bytes(ephemeral), keys.public_bytes(recipient_pub)
    kek = _kek(ephemeral.exchange(recipient_pub), eph_pub, rec_pub)
    wrap_nonce, nonce = os.urandom(NONCE), os.urandom(NONCE)
    header = {
        "version": VERSION,
        "cipher": "AES-256-GCM",
        "wrap": "X25519+HKDF-SHA256+AES-256-GCM",
        "recipient": rec_pub.hex(),
        "ephemeral": eph_pub.hex(),
        "wrap_nonce": wrap_nonce.hex(),
        "nonce": nonce.hex(),
    }
    header["wrapped_key"] = AESGCM(kek).encrypt(wrap_nonce, data_key, rec_pub).hex()
    head = json.dumps(header, sort_keys=True).encode()
    prefix = MAGIC + struct.pack(">I", len(head)) + head
    return prefix + AESGCM(data_key).encrypt(nonce, payload, prefix + associated)


def _parse(blob: bytes, name: str) -> tuple[dict, bytes, bytes]:
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 4:
        raise SealError(f"{name} is not a veil sealed model: bad magic")
    (hlen,) = struct.unpack(">I", blob[len(MAGIC) : len(MAGIC) + 4])
    end = len(MAGIC) + 4 + hlen
    if hlen > 1 << 16 or end > len(blob):
        raise SealError(f"{name} is truncated or has a bad header length")
    try:
        header = json.loads(blob[len(MAGIC) + 4 : end])
        for field in ("recipient", "ephemeral", "wrap_nonce", "nonce", "wrapped_key"):
            bytes.fromhex(header[field])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise SealError(f"{name}: malformed sealed header ({e})") from e
    if header.get("version") != VERSION:
        raise SealError(f"{name}: sealed format version {header.get('version')} not supported")
    return header, blob[:end], blob[end:]


def unseal_bytes(
    blob: bytes, private_key, name: str = "sealed model", associated: bytes = b""
) -> bytes:
    """The payload of a sealed blob, decrypted in memory; refuses a wrong key or tampering."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.asymmetric import x25519
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    header, prefix, body = _parse(blob, name)
    rec_pub = keys.public_bytes(private_key)
    if bytes.fromhex(header["recipient"]) != rec_pub:
        raise SealError(f"{name} is sealed for another key (recipient {header['recipient'][:16]}…)")
    try:
        eph_pub = bytes.fromhex(header["ephemeral"])
        shared = private_key.exchange(x25519.X25519PublicKey.from_public_bytes(eph_pub))
        kek = _kek(shared, eph_pub, rec_pub)
        data_key = AESGCM(kek).decrypt(
            bytes.fromhex(header["wrap_nonce"]), bytes.fromhex(header["wrapped_key"]), rec_pub
        )
        return AESGCM(data_key).decrypt(bytes.fromhex(header["nonce"]), body, prefix + associated)
    except (InvalidTag, ValueError) as e:
        raise SealError(f"{name} fails authentication: tampered or corrupted") from e


def seal_file(model: str | Path, recipient_pub: str | Path, out: str | Path, force=False) -> Path:
    """Seal a model file for the X25519 public key in ``recipient_pub``."""
    from veil.core.io import atomic_write

    refuse_overwrite(out, force)
    pub = keys.load(recipient_pub, "x25519", private=False)
    try:
        payload = Path(model).read_bytes()
    except OSError as e:
        raise SealError(f"cannot read {model}: {e}") from e
    return atomic_write(out, seal_bytes(payload, pub))


def unseal_file(sealed: str | Path, private_key: str | Path) -> bytes:
    """The model bytes of a sealed file, in memory only (never written to disk here)."""
    key = keys.load(private_key, "x25519", private=True)
    try:
        blob = Path(sealed).read_bytes()
    except OSError as e:
        raise SealError(f"cannot read {sealed}: {e}") from e
    return unseal_bytes(blob, key, str(sealed))


THREAT_MODEL = (
    "whoever holds the sealed file but not the recipient's private key learns only the "
    "model's size, and cannot change a byte unnoticed; a device that unseals holds the plain "
    "model in memory: sealing protects files at rest and in transit"
)


def seal_guarantee(what: str, sealed: bytes, step: str = ""):
    """The model-privacy ledger entry for ``sealed`` (a blob from :func:`seal_bytes`)."""
    from veil.core.guarantees import Guarantee

    header, _, _ = _parse(sealed, what)
    return Guarantee(
        guarantee="model",
        mechanism="sealed model file (AES-256-GCM, X25519 key wrap)",
        claim=f"{what}: only the holder of recipient key {header['recipient'][:16]}… can open "
        "it; a changed byte is refused",
        threat_model=THREAT_MODEL,
        parameters={
            "cipher": header["cipher"],
            "wrap": header["wrap"],
            "recipient": header["recipient"],
        },  # fmt: skip
        numbers={"sealed_bytes": len(sealed)},
        step=step,
    )
