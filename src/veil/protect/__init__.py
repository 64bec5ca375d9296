"""Model privacy: sealed (encrypted for one recipient) and signed model files.

- :mod:`veil.protect.keys`: X25519 (sealing) and Ed25519 (signing) key files.
- :mod:`veil.protect.seal`: AES-256-GCM sealing with the data key wrapped by X25519.
- :mod:`veil.protect.sign`: Ed25519-signed manifests of file digests.
"""

from veil.protect.seal import (
    SealError,
    seal_bytes,
    seal_file,
    seal_guarantee,
    unseal_bytes,
    unseal_file,
)
from veil.protect.sign import SignatureError, sign, signature_guarantee, verify

__all__ = [
    "SealError",
    "SignatureError",
    "seal_bytes",
    "seal_file",
    "seal_guarantee",
    "sign",
    "signature_guarantee",
    "unseal_bytes",
    "unseal_file",
    "verify",
]
