"""LSB steganography: hide bytes in the low bits of a lossless cover image, in a keyed order.

The payload (a 4-byte length, then the data) is cut into groups of ``bits`` bits (1 or 2),
each written into the low bits of one channel value; which values, and in what order, is a
pseudo-random permutation keyed by a secret (HKDF-SHA256 of the key seeds the generator).
Only lossless covers work (PNG, TIFF): JPEG's re-compression rewrites the low bits.

What it protects: it hides that an image carries a share; the share's secrecy rests on the
threshold sharing, not on the key. Someone who suspects LSB embedding can still detect it
statistically (steganalysis).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from veil.core.errors import VeilError

LENGTH_BYTES = 4
LOSSLESS = {"PNG", "TIFF"}


class StegoError(VeilError):
    """A cover that cannot carry the payload, a lossy cover, or a stego image with no payload."""


BLOCK = 64  # values per block: the keyed order shuffles blocks, values run in order inside


def _blocks(key: bytes, total_blocks: int, needed: int) -> np.ndarray:
    """The first ``needed`` blocks of a keyed pseudo-random permutation of all blocks."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    if needed > total_blocks:
        raise StegoError(
            f"payload needs {needed} blocks of {BLOCK} values, cover has {total_blocks}"
        )
    seed = HKDF(hashes.SHA256(), 32, salt=None, info=b"veil stego order v1").derive(key)
    rng = np.random.Generator(np.random.PCG64(int.from_bytes(seed, "big")))
    return rng.permutation(total_blocks)[:needed]


def _check_bits(bits: int) -> None:
    if bits not in (1, 2):
        raise StegoError(f"bits per value must be 1 or 2, got {bits}")


def capacity(shape: tuple[int, ...], bits: int = 1) -> int:
    """How many data bytes a cover of ``shape`` can carry at ``bits`` per value."""
    _check_bits(bits)
    usable = int(np.prod(shape)) // BLOCK * BLOCK
    return max(0, usable * bits // 8 - LENGTH_BYTES)


def _symbols(payload: bytes, bits: int) -> np.ndarray:
    """The payload as ``bits``-bit symbols, most significant first."""
    stream = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))
    if bits == 1:
        return stream
    return (stream[0::2] << 1) | stream[1::2]  # 8 bits per byte: always an even count


def _unsymbols(symbols: np.ndarray, bits: int, nbytes: int) -> bytes:
    if bits == 1:
        stream = symbols
    else:
        stream = np.empty(2 * len(symbols), dtype=np.uint8)
        stream[0::2], stream[1::2] = symbols >> 1, symbols & 1
    return np.packbits(stream[: nbytes * 8]).tobytes()


def embed(cover: np.ndarray, data: bytes, key: bytes, bits: int = 1) -> np.ndarray:
    """A copy of ``cover`` (integer array) carrying ``data`` in its low ``bits`` bits."""
    _check_bits(bits)
    if cover.dtype.kind != "u":
        raise StegoError(f"covers must be unsigned integer images, got {cover.dtype}")
    if len(data) > capacity(cover.shape, bits):
        extra = (len(data) - capacity(cover.shape, bits)) * 8 // bits + 1
        raise StegoError(
            f"cover too small: {len(data)} bytes need {extra} more channel values than the "
            f"{cover.size} it has at {bits} bit(s) each; use a larger cover or 2 bits"
        )
    symbols = _symbols(struct.pack(">I", len(data)) + data, bits)
    flat = cover.reshape(-1).copy()
    grid = flat[: flat.size // BLOCK * BLOCK].reshape(-1, BLOCK)  # a view into flat
    rows = _blocks(key, len(grid), -(-len(symbols) // BLOCK))
    chosen = grid[rows]  # gather whole blocks; the tail of the last block stays untouched
    values = chosen.reshape(-1)[: len(symbols)]
    values &= flat.dtype.type(np.iinfo(flat.dtype).max ^ ((1 << bits) - 1))
    values |= symbols.astype(flat.dtype, copy=False)
    grid[rows] = chosen
    return flat.reshape(cover.shape)


def extract(stego: np.ndarray, key: bytes, bits: int = 1) -> bytes:
    """The data :func:`embed` hid in ``stego`` with ``key``."""
    _check_bits(bits)
    flat = stego.reshape(-1)
    grid = flat[: flat.size // BLOCK * BLOCK].reshape(-1, BLOCK)
    low = (1 << bits) - 1

    def read(nbytes: int) -> bytes:
        count = -(-nbytes * 8 // bits)
        rows = _blocks(key, len(grid), -(-count // BLOCK))
        return _unsymbols((grid[rows].reshape(-1)[:count] & low).astype(np.uint8), bits, nbytes)

    if len(grid) == 0:
        raise StegoError("image too small to carry anything")
    (length,) = struct.unpack(">I", read(LENGTH_BYTES))
    if length > capacity(stego.shape, bits):
        raise StegoError("no payload found: wrong key, wrong bits setting, or not a stego image")
    return read(LENGTH_BYTES + length)[LENGTH_BYTES:]


def read_cover(path: str | Path) -> np.ndarray:
    """A lossless cover image as an integer array; JPEG and other lossy formats are refused."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            fmt = im.format
            if fmt not in LOSSLESS:
                raise StegoError(
                    f"{path} is {fmt}: covers must be lossless (PNG or TIFF); JPEG re-compression "
                    "rewrites the low bits that carry the share"
                )
            return np.array(im)
    except (OSError, UnidentifiedImageError) as e:
        raise StegoError(f"cannot read cover {path}: {e}") from e


def write_png(path: str | Path, array: np.ndarray) -> Path:
    """Write an integer image losslessly as PNG (atomically)."""
    import io

    from PIL import Image

    from veil.core.io import atomic_write

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return atomic_write(path, buf.getvalue())


def read_key(path: str | Path | None) -> bytes | None:
    """A stego key from its file (hex, as ``veil image share`` writes it); None for None."""
    if path is None:
        return None
    try:
        return bytes.fromhex(Path(path).read_text().strip())
    except (OSError, ValueError) as e:
        raise StegoError(f"cannot read stego key {path}: {e}") from e
