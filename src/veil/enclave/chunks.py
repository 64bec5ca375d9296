"""Data sealed for upload: AES-256-GCM chunks whose order and end are authenticated.

The STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015): a file is cut into
chunks of ``chunk_size`` bytes; chunk *i* is encrypted under nonce = 7-byte random prefix ‖
4-byte counter *i* ‖ 1 byte "last chunk" flag, with the file header as associated data.
Reordered, repeated, dropped or appended chunks and a truncated file all fail: a chunk only
decrypts at its own position, and only the real last chunk carries the flag.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable, Iterator

from veil.core.errors import VeilError

MAGIC = b"VEILDATA"
VERSION = 1
TAG = 16
MAX_CHUNK = 1 << 24


class ChunkError(VeilError):
    """Sealed data that is malformed, tampered, reordered or truncated."""


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">I", index) + (b"\x01" if last else b"\x00")


def _header(chunk_size: int, prefix: bytes, label: str) -> bytes:
    head = json.dumps(
        {
            "version": VERSION,
            "cipher": "AES-256-GCM STREAM",
            "chunk": chunk_size,
            "prefix": prefix.hex(),
            "label": label,
        },  # fmt: skip
        sort_keys=True,
    ).encode()
    return MAGIC + struct.pack(">I", len(head)) + head


def seal_chunks(
    data: bytes | Iterable[bytes], key: bytes, label: str = "", chunk_size: int = 1 << 20
) -> Iterator[bytes]:
    """The sealed form of ``data`` (bytes, or an iterable of pieces): header, then chunks."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not 0 < chunk_size <= MAX_CHUNK:
        raise ChunkError(f"chunk size must be in 1..{MAX_CHUNK}")
    prefix = os.urandom(7)
    header = _header(chunk_size, prefix, label)
    aead = AESGCM(key)
    yield header
    pieces = [data] if isinstance(data, bytes) else data
    buf, index = b"", 0
    for piece in pieces:
        buf += piece
        while len(buf) > chunk_size:  # keep at least one byte back for the last chunk
            yield aead.encrypt(_nonce(prefix, index, False), buf[:chunk_size], header)
            buf, index = buf[chunk_size:], index + 1
    yield aead.encrypt(_nonce(prefix, index, True), buf, header)


def seal(data: bytes, key: bytes, label: str = "", chunk_size: int = 1 << 20) -> bytes:
    return b"".join(seal_chunks(data, key, label, chunk_size))


def open_chunks(blob: bytes, key: bytes, label: str = "") -> Iterator[bytes]:
    """The plaintext chunks of a sealed blob, each checked before it is yielded."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    header, meta = _parse(blob)
    if meta["label"] != label:
        raise ChunkError(f"sealed data is labelled {meta['label']!r}, expected {label!r}")
    size, prefix = meta["chunk"] + TAG, bytes.fromhex(meta["prefix"])
    body, aead = memoryview(blob)[len(header) :], AESGCM(key)
    count = max(1, -(-len(body) // size))
    for i in range(count):
        piece = bytes(body[i * size : (i + 1) * size])
        try:
            yield aead.decrypt(_nonce(prefix, i, i == count - 1), piece, header)
        except InvalidTag as e:
            raise ChunkError(
                f"chunk {i} of {count} fails authentication: the data was altered, "
                "reordered or truncated, or the key is wrong"
            ) from e


def open_sealed(blob: bytes, key: bytes, label: str = "") -> bytes:
    return b"".join(open_chunks(blob, key, label))


def check_sealed(blob: bytes) -> dict:
    """The header facts of sealed data (chunk size, label); an error if it is not sealed data."""
    return _parse(blob)[1]


def _parse(blob: bytes) -> tuple[bytes, dict]:
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 4:
        raise ChunkError("not veil sealed data: bad magic")
    (hlen,) = struct.unpack(">I", blob[len(MAGIC) : len(MAGIC) + 4])
    end = len(MAGIC) + 4 + hlen
    if hlen > 4096 or end > len(blob):
        raise ChunkError("sealed data is truncated or has a bad header length")
    try:
        meta = json.loads(blob[len(MAGIC) + 4 : end])
        if not 0 < int(meta["chunk"]) <= MAX_CHUNK or len(bytes.fromhex(meta["prefix"])) != 7:
            raise ValueError("bad chunk size or prefix")
        str(meta["label"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ChunkError(f"malformed sealed-data header ({e})") from e
    if meta.get("version") != VERSION:
        raise ChunkError(f"sealed-data version {meta.get('version')} is not supported")
    return blob[:end], meta
