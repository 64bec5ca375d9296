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

import functools
import struct
from pathlib import Path

import numpy as np

from veil.core.errors import VeilError

LENGTH_BYTES = 4
LOSSLESS = {"PNG", "TIFF"}


class StegoError(VeilError):
    """A cover that cannot carry the payload, a lossy cover, or a stego image with no payload."""


BLOCK = 64  # values per block: the keyed order shuffles blocks, values run in order inside
CHUNK = 512  # blocks handled at once while embedding: the working set stays in cache


def _blocks(key: bytes, total_blocks: int, needed: int) -> tuple[np.ndarray, np.ndarray]:
    """A keyed pseudo-random permutation of all blocks (the payload's i-th block goes to
    block ``order[i]``), and its inverse (which payload block each cover block gets)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    if needed > total_blocks:
        raise StegoError(
            f"payload needs {needed} blocks of {BLOCK} values, cover has {total_blocks}"
        )
    seed = HKDF(hashes.SHA256(), 32, salt=None, info=b"veil stego order v1").derive(key)
    return _order(seed, total_blocks)


@functools.lru_cache(maxsize=4)
def _order(seed: bytes, total_blocks: int) -> tuple[np.ndarray, np.ndarray]:
    """The permutation itself, kept for the next cover: the n shares of a sharing usually go
    into covers of one size under one key (a permutation of 67,500 blocks costs 0.5 ms).
    It is derived from the stego key and, like the key, only hides where the share lies."""
    rng = np.random.Generator(np.random.PCG64(int.from_bytes(seed, "big")))
    order = rng.permutation(total_blocks)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(total_blocks)
    order.flags.writeable = inverse.flags.writeable = False
    return order, inverse


def _check_bits(bits: int) -> None:
    if bits not in (1, 2):
        raise StegoError(f"bits per value must be 1 or 2, got {bits}")


def capacity(shape: tuple[int, ...], bits: int = 1) -> int:
    """How many data bytes a cover of ``shape`` can carry at ``bits`` per value."""
    _check_bits(bits)
    usable = int(np.prod(shape)) // BLOCK * BLOCK
    return max(0, usable * bits // 8 - LENGTH_BYTES)


@functools.lru_cache(maxsize=8)
def _word_tables(bits: int, itemsize: int) -> tuple[np.ndarray, np.ndarray]:
    """Embedding one payload byte writes its 8/bits symbols (most significant first) into
    the low bits of 8/bits consecutive little-endian cover values: as 32-bit words, the
    byte's words are ``table[byte]`` after the values are ANDed with ``keep``."""
    per = 8 // bits
    low = (1 << bits) - 1
    dtype = np.dtype(f"<u{itemsize}")
    byte = np.arange(256)[:, None]
    shifts = 8 - bits * (np.arange(per) + 1)
    table = ((byte >> shifts) & low).astype(dtype).view("<u4")
    keep = np.full(per, np.iinfo(dtype).max ^ low, dtype=dtype).view("<u4")
    return table, keep


def _unsymbols(symbols: np.ndarray, bits: int, nbytes: int) -> bytes:
    if bits == 1:
        stream = symbols
    else:
        stream = np.empty(2 * len(symbols), dtype=np.uint8)
        stream[0::2], stream[1::2] = symbols >> 1, symbols & 1
    return np.packbits(stream[: nbytes * 8]).tobytes()


def embed(cover: np.ndarray, data: bytes, key: bytes, bits: int = 1) -> np.ndarray:
    """A copy of ``cover`` (integer array) carrying ``data`` in its low ``bits`` bits.

    One pass over the cover in its own order, a chunk of blocks at a time, on 32-bit words:
    each block fetches the payload bytes it carries (by the inverse permutation) and gets
    their symbols by table; blocks that carry nothing are copied back unchanged.
    """
    _check_bits(bits)
    if cover.dtype.kind != "u":
        raise StegoError(f"covers must be unsigned integer images, got {cover.dtype}")
    if len(data) > capacity(cover.shape, bits):
        extra = (len(data) - capacity(cover.shape, bits)) * 8 // bits + 1
        raise StegoError(
            f"cover too small: {len(data)} bytes need {extra} more channel values than the "
            f"{cover.size} it has at {bits} bit(s) each; use a larger cover or 2 bits"
        )
    size = LENGTH_BYTES + len(data)
    src = np.ascontiguousarray(cover, dtype=cover.dtype.newbyteorder("<")).reshape(-1)
    out = np.empty_like(src)
    blocks = src.size // BLOCK
    out[blocks * BLOCK :] = src[blocks * BLOCK :]
    src_words, out_words = (a[: blocks * BLOCK].view("<u4").reshape(blocks, -1) for a in (src, out))
    per_block = BLOCK * bits // 8  # payload bytes per block
    needed = -(-size // per_block)
    order, inverse = _blocks(key, blocks, needed)
    carried = np.zeros((needed + 1, per_block), dtype=np.uint8)  # row `needed`: nothing
    flat_carried = carried.reshape(-1)
    flat_carried[:LENGTH_BYTES] = np.frombuffer(struct.pack(">I", len(data)), np.uint8)
    flat_carried[LENGTH_BYTES:size] = np.frombuffer(data, np.uint8)
    source = np.minimum(inverse, needed)
    table, keep = _word_tables(bits, src.itemsize)
    keep_rows = np.tile(keep, (min(CHUNK, blocks), per_block))  # full rows: no broadcasting
    for start in range(0, blocks, CHUNK):
        part = slice(start, start + CHUNK)
        words = np.bitwise_and(
            src_words[part], keep_rows[: len(src_words[part])], out=out_words[part]
        )
        words |= table.take(carried.take(source[part], 0).reshape(-1), 0).reshape(len(words), -1)
    idle = order[needed:]  # blocks that carry nothing keep every bit
    out_words[idle] = src_words[idle]
    used = size - (needed - 1) * per_block  # the last block may be partly used
    last = order[needed - 1]
    out_words[last, used * len(keep) :] = src_words[last, used * len(keep) :]
    return out.reshape(cover.shape).astype(cover.dtype, copy=False)


def extract(stego: np.ndarray, key: bytes, bits: int = 1) -> bytes:
    """The data :func:`embed` hid in ``stego`` with ``key``."""
    _check_bits(bits)
    flat = np.ascontiguousarray(stego).reshape(-1)
    grid = flat[: flat.size // BLOCK * BLOCK].reshape(-1, BLOCK)
    low = (1 << bits) - 1

    def read(nbytes: int) -> bytes:
        count = -(-nbytes * 8 // bits)
        rows = _blocks(key, len(grid), -(-count // BLOCK))[0][: -(-count // BLOCK)]
        values = np.take(grid, rows, axis=0).reshape(-1)[:count] & low
        return _unsymbols(values.astype(np.uint8), bits, nbytes)

    if len(grid) == 0:
        raise StegoError("image too small to carry anything")
    (length,) = struct.unpack(">I", read(LENGTH_BYTES))
    if length > capacity(stego.shape, bits):
        raise StegoError("no payload found: wrong key, wrong bits setting, or not a stego image")
    return read(LENGTH_BYTES + length)[LENGTH_BYTES:]


def cover_files(folder: str | Path, n: int) -> list[Path]:
    """The first ``n`` files of ``folder`` (sorted by name), to carry ``n`` shares."""
    where = Path(folder)
    files = sorted(p for p in where.iterdir() if p.is_file()) if where.is_dir() else []
    if len(files) < n:
        raise StegoError(f"{folder} holds {len(files)} cover files; {n} are needed")
    return files[:n]


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
