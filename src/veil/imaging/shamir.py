"""(k, n) threshold secret sharing of byte strings (Shamir 1979) over GF(2^8), authenticated.

Each byte of the secret is the constant term of its own random polynomial of degree k-1;
share i holds the polynomials' values at x = i. Any k shares give the secret back exactly
(Lagrange interpolation at 0); any k-1 are uniformly distributed whatever the secret.

Authentication: a fresh 32-byte key K is appended to the secret before sharing, so K has the
same threshold. Every share carries HMAC-SHA256 over its header and payload under a key
derived from K for that share (HKDF). Recovery reconstructs K, checks every share's tag,
and, given more than k shares, finds a subset whose shares all verify and names the ones
that do not. Shares of different sharings (different random sharing ids) are never mixed.

Threat model: fewer than k share holders learn nothing about the image (information-
theoretically); a holder who alters a share is detected at recovery. The dealer is trusted.
"""

from __future__ import annotations

import itertools
import json
import secrets
import struct
from dataclasses import dataclass, field

import numpy as np

from veil.core.errors import VeilError
from veil.imaging import gf256

MAGIC = b"VEILSHR1"
VERSION = 1
KEY_BYTES = 32
TAG_BYTES = 32
MAX_HEADER = 1 << 16


class ShareError(VeilError):
    """A share that is malformed, tampered, from another sharing, or too few shares."""


@dataclass(frozen=True)
class Share:
    """One share: its index (x), the threshold k of n, the sharing id, metadata, payload, tag."""

    index: int
    k: int
    n: int
    sharing_id: str
    payload: bytes
    meta: dict = field(default_factory=dict)
    tag: bytes = b""

    def header(self) -> bytes:
        doc = {
            "version": VERSION,
            "index": self.index,
            "k": self.k,
            "n": self.n,
            "sharing_id": self.sharing_id,
            "payload_len": len(self.payload),
            "meta": self.meta,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    def signed_parts(self) -> tuple[bytes, bytes]:
        """What the tag covers: the magic and header, then the payload (kept apart: the
        payload can be large, and hashing it needs no copy)."""
        header = self.header()
        return MAGIC + struct.pack(">I", len(header)) + header, self.payload

    def to_bytes(self) -> bytes:
        return b"".join((*self.signed_parts(), self.tag))

    @classmethod
    def from_bytes(cls, blob: bytes, name: str = "share") -> Share:
        """Parse a share; every malformed input raises ShareError, never anything else."""
        if len(blob) < len(MAGIC) + 4 + TAG_BYTES or not blob.startswith(MAGIC):
            raise ShareError(f"{name} is not a veil share: bad magic")
        (hlen,) = struct.unpack(">I", blob[len(MAGIC) : len(MAGIC) + 4])
        start = len(MAGIC) + 4
        if hlen > MAX_HEADER or start + hlen + TAG_BYTES > len(blob):
            raise ShareError(f"{name} is truncated or has a bad header length")
        try:
            doc = json.loads(blob[start : start + hlen])
            index, k, n = int(doc["index"]), int(doc["k"]), int(doc["n"])
            sharing_id, plen, meta = str(doc["sharing_id"]), int(doc["payload_len"]), doc["meta"]
            version = doc["version"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise ShareError(f"{name} has a malformed header: {e}") from e
        if version != VERSION:
            raise ShareError(f"{name}: share format version {version} is not supported")
        if not (2 <= k <= n <= 255 and 1 <= index <= n) or not isinstance(meta, dict):
            raise ShareError(f"{name}: impossible header (index {index}, k {k}, n {n})")
        body = blob[start + hlen :]
        if len(body) != plen + TAG_BYTES:
            raise ShareError(
                f"{name} is truncated or padded: payload {len(body) - TAG_BYTES}, "
                f"header says {plen}"
            )
        return cls(index, k, n, sharing_id, body[:plen], meta, body[plen:])


def _share_key(key: bytes, sharing_id: str, index: int) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    info = b"veil share mac v1 " + sharing_id.encode() + b" " + str(index).encode()
    return HKDF(hashes.SHA256(), 32, salt=None, info=info).derive(key)


def _mac(share: Share, key: bytes):
    """HMAC-SHA256 over the share's signed parts, under the key derived for this share."""
    from cryptography.hazmat.primitives import hashes, hmac

    h = hmac.HMAC(_share_key(key, share.sharing_id, share.index), hashes.SHA256())
    for part in share.signed_parts():
        h.update(part)
    return h


def _tag(share: Share, key: bytes) -> bytes:
    return _mac(share, key).finalize()


def _verify(share: Share, key: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        _mac(share, key).verify(share.tag)  # constant-time comparison
        return True
    except InvalidSignature:
        return False


def split(secret: bytes, k: int, n: int, meta: dict | None = None) -> list[Share]:
    """Share ``secret`` so that any ``k`` of the ``n`` shares recover it and k-1 reveal nothing."""
    if not (2 <= k <= n <= 255):
        raise ShareError(f"need 2 <= k <= n <= 255, got k={k}, n={n}")
    key = secrets.token_bytes(KEY_BYTES)
    size = len(secret) + KEY_BYTES
    padded = -(-size // 8) * 8  # whole 64-bit words for the kernel; the tail is cut off
    data = np.zeros(padded, dtype=np.uint8)
    data[: len(secret)] = np.frombuffer(secret, dtype=np.uint8)
    data[len(secret) : size] = np.frombuffer(key, dtype=np.uint8)
    coeffs = np.frombuffer(secrets.token_bytes((k - 1) * padded), dtype=np.uint8)
    values = gf256.polynomials(data, coeffs.reshape(k - 1, padded), list(range(1, n + 1)))
    sharing_id = secrets.token_hex(8)
    shares = []
    for x in range(1, n + 1):
        unsigned = Share(x, k, n, sharing_id, values[x - 1, :size].tobytes(), meta or {})
        shares.append(Share(**{**unsigned.__dict__, "tag": _tag(unsigned, key)}))
    return shares


def xor_share(share: Share, indices: list[int]) -> np.ndarray:
    """This holder's XOR share of the secret's bytes, for recovery by the holders ``indices``.

    Lagrange interpolation at 0 over GF(2^8) is a sum (XOR) of one term per share, each
    computable by its holder alone: the k terms are an XOR sharing of the secret (the image
    bytes, then the MAC key). This is how secure computation (``veil.encrypted.mpc``) starts
    from image shares without anyone reconstructing the image; the shares' tags cannot be
    checked that way, since checking needs the reconstructed key.
    """
    xs = sorted(set(indices))
    if share.index not in xs or len(xs) != share.k:
        raise ShareError(f"need the {share.k} distinct holder indices, including {share.index}")
    num, den = 1, 1
    for xj in xs:
        if xj != share.index:
            num = int(gf256.MUL[num, xj])
            den = int(gf256.MUL[den, xj ^ share.index])
    coeff = int(gf256.MUL[num, gf256.inv(den)])
    return gf256.scale(coeff, np.frombuffer(share.payload, dtype=np.uint8))


def _interpolate(shares: list[Share]) -> bytes:
    """The constant terms from exactly k shares (Lagrange at 0)."""
    xs = [s.index for s in shares]
    out = np.zeros(len(shares[0].payload), dtype=np.uint8)
    for s in shares:
        out ^= xor_share(s, xs)
    return out.tobytes()


@dataclass(frozen=True)
class Recovered:
    """The secret, the sharing's metadata, and the indices of shares that failed their check."""

    secret: bytes
    meta: dict
    used: list[int]
    rejected: list[int]


def combine(shares: list[Share]) -> Recovered:
    """Recover the secret from at least k shares of one sharing, checking every share's tag."""
    if not shares:
        raise ShareError("no shares given")
    first = shares[0]
    for s in shares[1:]:
        if (s.sharing_id, s.k, s.n) != (first.sharing_id, first.k, first.n):
            raise ShareError(
                f"share {s.index} (sharing {s.sharing_id}, {s.k} of {s.n}) does not match share "
                f"{first.index} (sharing {first.sharing_id}, {first.k} of {first.n}): it is "
                "from another sharing or tampered; do not mix sharings"
            )
    by_index = {}
    for s in shares:
        if s.index in by_index and by_index[s.index].to_bytes() != s.to_bytes():
            raise ShareError(f"two different shares claim index {s.index}")
        by_index[s.index] = s
    unique = sorted(by_index.values(), key=lambda s: s.index)
    if len(unique) < first.k:
        raise ShareError(f"{len(unique)} distinct shares given; this sharing needs {first.k}")
    if len({len(s.payload) for s in unique}) != 1:
        raise ShareError("shares have different payload lengths: tampered or truncated")
    for subset in itertools.combinations(unique, first.k):
        data = _interpolate(list(subset))
        secret, key = data[:-KEY_BYTES], data[-KEY_BYTES:]
        good = [s.index for s in unique if _verify(s, key)]
        if all(s.index in good for s in subset):
            bad = [s.index for s in unique if s.index not in good]
            return Recovered(secret, first.meta, [s.index for s in subset], bad)
    if len(unique) == first.k:
        raise ShareError(
            f"shares {[s.index for s in unique]} fail authentication: at least one "
            "is tampered; give more than k shares to find which"
        )
    raise ShareError(
        f"no {first.k} of the {len(unique)} shares verify together: too many are tampered"
    )
