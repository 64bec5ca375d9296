"""Share images (PNG/TIFF, 8/16-bit, grey or RGB) and recover them exactly, pixels and dtype.

The secret is the raw pixel bytes; each share's header records the shape, dtype and format
(not secret: every share holder sees them). Shares are written either as ``.vshare`` files
or hidden in lossless cover images (``veil.imaging.stego``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from veil.imaging.shamir import Share, ShareError, combine, split, xor_share
from veil.imaging.stego import StegoError, embed, extract, read_cover

IMAGE_DTYPES = {"uint8", "uint16"}
SHARE_SUFFIX = ".vshare"


def read_image(path: str | Path) -> tuple[np.ndarray, str]:
    """Pixels and format of a PNG or TIFF image (8/16-bit, grey or RGB)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            fmt, pixels = im.format, np.array(im)
    except (OSError, UnidentifiedImageError) as e:
        raise ShareError(f"cannot read image {path}: {e}") from e
    if pixels.dtype == np.int32 and pixels.min() >= 0 and pixels.max() < 65536:
        pixels = pixels.astype(np.uint16)  # Pillow reads 16-bit greyscale PNG as int32 ("I")
    if str(pixels.dtype) not in IMAGE_DTYPES:
        raise ShareError(f"{path}: {pixels.dtype} images are not supported (8 or 16 bit only)")
    return pixels, fmt or "PNG"


def share_image(pixels: np.ndarray, k: int, n: int, fmt: str = "PNG") -> list[Share]:
    """Share an image array; any k of the n shares give back the exact pixels and dtype."""
    if str(pixels.dtype) not in IMAGE_DTYPES or pixels.ndim not in (2, 3):
        raise ShareError(
            f"expected a 2-D or 3-D uint8/uint16 image, got {pixels.dtype} {pixels.shape}"
        )
    meta = {"kind": "image", "shape": list(pixels.shape), "dtype": str(pixels.dtype), "format": fmt}
    return split(memoryview(np.ascontiguousarray(pixels)).cast("B"), k, n, meta)


def recover_image(shares: list[Share]) -> tuple[np.ndarray, dict]:
    """The image from at least k shares (authenticated), and the sharing's metadata."""
    rec = combine(shares)
    meta = rec.meta
    if meta.get("kind") != "image":
        raise ShareError("these shares hold bytes, not an image")
    pixels = np.frombuffer(rec.secret, dtype=np.dtype(meta["dtype"])).reshape(meta["shape"])
    return pixels.copy(), {**meta, "used": rec.used, "rejected": rec.rejected}


def write_image(path: str | Path, pixels: np.ndarray, fmt: str = "PNG") -> Path:
    """Write pixels losslessly (PNG or TIFF), atomically."""
    import io

    from PIL import Image

    from veil.core.io import atomic_write

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="TIFF" if fmt == "TIFF" else "PNG")
    return atomic_write(path, buf.getvalue())


def hide_share(share: Share, cover: np.ndarray, key: bytes, bits: int = 1) -> np.ndarray:
    """A copy of ``cover`` carrying ``share`` (see ``veil.imaging.stego.embed``)."""
    return embed(cover, share.to_bytes(), key, bits)


def share_file(path: str | Path, k: int, n: int, keep_identifying: bool = False):
    """Shares of a DICOM, PNG or TIFF file; the DICOM attributes removed (names); the pixels.

    DICOM: identifying attributes and private tags are removed unless ``keep_identifying``."""
    from veil.imaging.dicom import is_dicom, read_dicom, share_dicom

    if is_dicom(path):
        shares, removed = share_dicom(path, k, n, keep_identifying)
        return shares, removed, read_dicom(path)[1]
    pixels, fmt = read_image(path)
    return share_image(pixels, k, n, fmt), [], pixels


def hide_in_covers(shares: list[Share], covers: list[np.ndarray], names: list[str],
                   key: bytes, bits: int = 1) -> tuple[list[np.ndarray], list[dict]]:  # fmt: skip
    """Each share hidden in its cover (named ``names``): the stego images, and per carrier
    its share index, cover name, bits, PSNR and SSIM against the cover."""
    from veil.core.metrics import psnr, ssim

    stegos, carriers = [], []
    for s, cover, name in zip(shares, covers, names, strict=True):
        stego = hide_share(s, cover, key, bits)
        stegos.append(stego)
        carriers.append({"share": s.index, "cover": name, "bits": bits,
                         "psnr_db": psnr(cover, stego), "ssim": ssim(cover, stego)})  # fmt: skip
    return stegos, carriers


def read_share(path: str | Path, key: bytes | None = None, bits: int = 1) -> Share:
    """A share from a ``.vshare`` file, or from a stego image (needs the stego ``key``)."""
    path = Path(path)
    if path.suffix == SHARE_SUFFIX:
        try:
            return Share.from_bytes(path.read_bytes(), str(path))
        except OSError as e:
            raise ShareError(f"cannot read {path}: {e}") from e
    if key is None:
        raise StegoError(f"{path} is an image: give the stego key to extract its share")
    return Share.from_bytes(extract(read_cover(path), key, bits), str(path))


THREAT_MODEL = (
    "fewer than k share holders learn nothing about the image (information-theoretic); an "
    "altered share is detected at recovery; the dealer who shares the image is trusted; the "
    "stego key only hides that a cover carries a share"
)


def sharing_guarantee(k: int, n: int, what: str, carriers: list[dict] | None = None,
                      removed: list[str] | None = None, step: str = ""):  # fmt: skip
    """The input-privacy ledger entry for an image shared k-of-n (with its carriers' quality)."""
    from veil.core.guarantees import Guarantee

    carriers = carriers or []
    numbers = {"k": k, "n": n}
    if carriers:
        numbers["min_psnr_db"] = min(c["psnr_db"] for c in carriers)
    return Guarantee(
        guarantee="input",
        mechanism="Shamir sharing over GF(2^8)" + (" in LSB stego covers" if carriers else ""),
        claim=f"{what}: any {k} of {n} holders recover it; {k - 1} or fewer learn nothing",
        threat_model=THREAT_MODEL,
        parameters={
            "k": k,
            "n": n,
            "authentication": "HMAC-SHA256 per share, key shared k-of-n",
            "dicom_removed": removed or [],
        },  # fmt: skip
        numbers=numbers,
        evidence={"carriers": carriers},
        step=step,
    )


def pixel_part(shares: list[Share], holders: list[int]) -> tuple[np.ndarray, dict]:
    """This holder's XOR part of an 8-bit image's pixels, from the shares it holds, for the
    ``holders`` (k indices) that together stand in for the image: the start of a secure
    computation on the image (``veil mpc``) without anyone reconstructing it. Returns the
    part (uint8, the image's shape) and the sharing's metadata."""
    if not shares:
        raise ShareError("no share given")
    first = shares[0]
    if any(s.sharing_id != first.sharing_id for s in shares):
        raise ShareError("these shares come from different sharings")
    meta = first.meta
    if meta.get("kind") != "image" or meta.get("dtype") != "uint8":
        raise ShareError("secure computation takes 8-bit images (uint8 pixels)")
    part = np.zeros(len(first.payload), dtype=np.uint8)
    for s in shares:
        part ^= xor_share(s, holders)
    size = int(np.prod(meta["shape"]))
    return part[:size].reshape(meta["shape"]), meta
