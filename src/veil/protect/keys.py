"""Key files for sealing (X25519) and signing (Ed25519): raw keys, hex-encoded, one per file.

Private key files are written with mode 0600 and never overwritten; public key files may be
shared. Only ``cryptography``'s primitives are used.
"""

from __future__ import annotations

import os
from pathlib import Path

from veil.core.errors import VeilError, refuse_overwrite
from veil.core.io import write_private

KINDS = ("x25519", "ed25519", "secret")


class KeyFileError(VeilError):
    """A key file that is missing, malformed, or of the wrong kind."""


def _classes(kind: str):
    from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

    if kind == "x25519":
        return x25519.X25519PrivateKey, x25519.X25519PublicKey
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey
    raise KeyFileError(f"unknown key kind {kind!r}; use one of {', '.join(KINDS)}")


def _raw(key) -> bytes:
    from cryptography.hazmat.primitives import serialization as s

    if hasattr(key, "private_bytes"):
        return key.private_bytes(s.Encoding.Raw, s.PrivateFormat.Raw, s.NoEncryption())
    return key.public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)


def generate(stem: str | Path, kind: str, force: bool = False) -> tuple[Path, Path | None]:
    """Write ``STEM.key`` (private, mode 0600) and ``STEM.pub``; return their paths.

    Kind ``secret`` is 32 random bytes (e.g. a watermark key) and has no public half.
    """
    stem = Path(stem)
    priv_path, pub_path = stem.with_suffix(".key"), stem.with_suffix(".pub")
    if kind == "secret":
        refuse_overwrite(priv_path, force)
        write_private(priv_path, f"secret-private {os.urandom(32).hex()}\n")
        return priv_path, None
    private_cls, _ = _classes(kind)
    for p in (priv_path, pub_path):
        refuse_overwrite(p, force)
    key = private_cls.generate()
    write_private(priv_path, f"{kind}-private {_raw(key).hex()}\n")
    pub_path.write_text(f"{kind}-public {_raw(key.public_key()).hex()}\n")
    return priv_path, pub_path


def load(path: str | Path, kind: str, private: bool):
    """A key of ``kind`` from a file written by :func:`generate` (bytes for ``secret``)."""
    private_cls, public_cls = _classes(kind) if kind != "secret" else (None, None)
    want = f"{kind}-{'private' if private else 'public'}"
    try:
        label, hexkey = Path(path).read_text().split()
        raw = bytes.fromhex(hexkey)
    except (OSError, ValueError) as e:
        raise KeyFileError(f"cannot read key {path}: {e}") from e
    if label != want:
        raise KeyFileError(f"{path} holds a {label} key; this needs a {want} key")
    if kind == "secret":
        return raw
    try:
        cls = private_cls if private else public_cls
        return cls.from_private_bytes(raw) if private else cls.from_public_bytes(raw)
    except ValueError as e:
        raise KeyFileError(f"{path}: not a valid {kind} key ({e})") from e


def public_bytes(key) -> bytes:
    """Raw bytes of a public key (or of a private key's public half)."""
    return _raw(key.public_key() if hasattr(key, "private_bytes") else key)
