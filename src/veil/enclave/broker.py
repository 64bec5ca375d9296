"""The data owner's key broker: releases the data key only to an attested enclave.

1. The broker gives the enclave a fresh nonce (:meth:`KeyBroker.challenge`).
2. The enclave makes an X25519 key pair in memory and asks its platform for a quote whose
   report data is ``report_data(enclave_public_key, nonce)``.
3. :meth:`KeyBroker.release` checks the quote (trusted platform key, signature, allowed
   measurement, report data), spends the nonce (a replayed quote finds it gone), and wraps
   the data key for the enclave key: X25519 + HKDF-SHA256 + AES-256-GCM with the
   measurement as associated data (:func:`veil.protect.seal.seal_bytes`), so the wrapped
   key opens only in that enclave and only under that measurement.
"""

from __future__ import annotations

import os
import time

from veil.enclave.attest import AttestationError, Backend, Evidence, Policy, report_data

NONCE_TTL_S = 300.0


class KeyBroker:
    """Holds the data key; hands it, wrapped, to enclaves that prove what they run."""

    def __init__(self, data_key: bytes, policy: Policy, ttl_s: float = NONCE_TTL_S):
        if len(data_key) != 32:
            raise ValueError("the data key is 32 bytes (AES-256)")
        self._key, self.policy, self.ttl_s = data_key, policy, ttl_s
        self._nonces: dict[bytes, float] = {}

    def challenge(self) -> bytes:
        nonce = os.urandom(32)
        self._nonces[nonce] = time.monotonic() + self.ttl_s
        return nonce

    def release(self, evidence: Evidence, enclave_key: bytes, nonce: bytes) -> bytes:
        """The data key wrapped for ``enclave_key``, if ``evidence`` proves the enclave."""
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

        from veil.protect.seal import seal_bytes

        expiry = self._nonces.pop(nonce, None)  # single use, whatever happens next
        if expiry is None or time.monotonic() > expiry:
            raise AttestationError("unknown, spent or expired nonce: ask for a new challenge")
        Backend.verify(evidence, self.policy, report_data(enclave_key, nonce))
        try:
            recipient = X25519PublicKey.from_public_bytes(enclave_key)
        except ValueError as e:
            raise AttestationError("the enclave key is not an X25519 public key") from e
        return seal_bytes(self._key, recipient, associated=evidence.measurement)


class EnclaveKey:
    """The enclave's side: a key pair that never leaves memory, and the unwrap."""

    def __init__(self):
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        self._private = X25519PrivateKey.generate()

    def public(self) -> bytes:
        from veil.protect.keys import public_bytes

        return public_bytes(self._private)

    def attest(self, backend: Backend, nonce: bytes) -> Evidence:
        return backend.quote(report_data(self.public(), nonce))

    def unwrap(self, wrapped: bytes, measurement: bytes) -> bytes:
        from veil.protect.seal import SealError, unseal_bytes

        try:
            return unseal_bytes(wrapped, self._private, "wrapped data key", measurement)
        except SealError as e:
            raise AttestationError(f"cannot unwrap the data key: {e}") from e
