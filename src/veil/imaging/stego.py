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
def _spread_table(bits: int, itemsize: int) -> tuple[np.ndarray, np.uint64, int]:
    """Embedding one payload byte writes its 8/bits symbols (most significant first) into
    the low bits of 8/bits consecutive little-endian cover values. As 64-bit words:
    ``table[byte]`` is those bits laid out in place, and ``keep`` masks off the low bits.
    Also the kernel's mode: 1 or 2 words per byte, or 0 (half a word: 8-bit values at 2
    bits, whose table rows hold 32 bits)."""
    per = 8 // bits
    low = (1 << bits) - 1
    dtype = np.dtype(f"<u{itemsize}")
    byte = np.arange(256)[:, None]
    shifts = 8 - bits * (np.arange(per) + 1)
    table = ((byte >> shifts) & low).astype(dtype).view("<u4")
    keep32 = int(np.full(per, np.iinfo(dtype).max ^ low, dtype=dtype).view("<u4")[0])
    mode = table.shape[1] // 2
    table = table.astype("<u8") if mode == 0 else np.ascontiguousarray(table).view("<u8")
    table.flags.writeable = False
    return table, np.uint64(keep32 | keep32 << 32), mode


def _symbols(data: np.ndarray, bits: int) -> np.ndarray:
    """Bytes as ``bits``-bit symbols, most significant first."""
    stream = np.unpackbits(data)
    return stream if bits == 1 else (stream[0::2] << 1) | stream[1::2]


def _unsymbols(symbols: np.ndarray, bits: int, nbytes: int) -> bytes:
    if bits == 1:
        stream = symbols
    else:
        stream = np.empty(2 * len(symbols), dtype=np.uint8)
        stream[0::2], stream[1::2] = symbols >> 1, symbols & 1
    return np.packbits(stream[: nbytes * 8]).tobytes()


def _target(cover: np.ndarray, out: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, bool]:
    """The cover's values as one little-endian row, where to write (a new array, or ``out``),
    and whether that is the cover itself (in place: blocks that carry nothing need no copy)."""
    src = np.ascontiguousarray(cover, dtype=cover.dtype.newbyteorder("<")).reshape(-1)
    if out is None:
        return src, np.empty_like(src), False
    if out.shape != cover.shape or out.dtype != src.dtype or not out.flags.c_contiguous:
        raise StegoError(
            f"out must be a C-contiguous little-endian array like the cover ({cover.shape}, "
            f"{src.dtype}), got {out.shape} {out.dtype}"
        )
    dst = out.reshape(-1)
    inplace = np.shares_memory(dst, src)
    if inplace and dst.ctypes.data != src.ctypes.data:
        raise StegoError("out overlaps the cover without being the cover")
    return src, dst, inplace


def embed(cover: np.ndarray, data: bytes, key: bytes, bits: int = 1,
          out: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """A copy of ``cover`` (integer array) carrying ``data`` in its low ``bits`` bits; with
    ``out``, written there instead (``out=cover`` embeds in place, the fastest: no new
    memory to fault in, and blocks that carry nothing are not touched).

    One compiled pass over the cover's 64-bit words in its own order
    (:func:`veil.imaging.kernels.embed_words`): each block fetches the payload bytes it
    carries (by the inverse permutation) and gets their symbols by table.
    """
    from veil.imaging.kernels import embed_words

    _check_bits(bits)
    if cover.dtype.kind != "u":
        raise StegoError(f"covers must be unsigned integer images, got {cover.dtype}")
    if len(data) > capacity(cover.shape, bits):
        extra = (len(data) - capacity(cover.shape, bits)) * 8 // bits + 1
        raise StegoError(
            f"cover too small: {len(data)} bytes need {extra} more channel values than the "
            f"{cover.size} it has at {bits} bit(s) each; use a larger cover or 2 bits"
        )
    src, dst, inplace = _target(cover, out)
    payload = np.empty(LENGTH_BYTES + len(data), dtype=np.uint8)
    payload[:LENGTH_BYTES] = np.frombuffer(struct.pack(">I", len(data)), np.uint8)
    payload[LENGTH_BYTES:] = np.frombuffer(data, np.uint8)
    blocks = src.size // BLOCK
    if not inplace:
        dst[blocks * BLOCK :] = src[blocks * BLOCK :]
    per_block = BLOCK * bits // 8  # payload bytes per block
    needed = -(-payload.size // per_block)
    order, inverse = _blocks(key, blocks, needed)
    table, keep, mode = _spread_table(bits, src.itemsize)
    words = (a[: blocks * BLOCK].view("<u8").reshape(blocks, -1) for a in (src, dst))
    embed_words(*words, inverse, payload, table, keep, mode, not inplace)
    full = payload.size // per_block * per_block
    if full < payload.size:  # the last block is partly used: its other values keep every bit
        symbols = _symbols(payload[full:], bits)
        at = slice(order[needed - 1] * BLOCK, order[needed - 1] * BLOCK + len(symbols))
        dst[at] = (src[at] >> bits << bits) | symbols
    result = dst.reshape(cover.shape)
    return result if out is not None else result.astype(cover.dtype, copy=False)


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
