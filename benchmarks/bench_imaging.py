"""Image sharing benchmarks: share+embed and extract+recover throughput, PSNR of stego images.

A 512x512 16-bit image (512 KiB of secret), 3-of-5 sharing, each share hidden at 1 bit per
channel in its own 1200x1200 RGB cover. Throughput is MB of secret per second on one core
(single-threaded: NumPy and the compiled kernels of veil.imaging.kernels). A pure-Python
implementation of the same sharing and embedding, run in the same process on a smaller
image, gives the speed-up.

Share+embed is timed two ways: into the cover arrays themselves (``embed(..., out=cover)``,
the headline: what a dealer holding decoded covers does) and returning a new array per
stego image. The difference is the operating system handing out and zeroing 21.6 MB of
fresh pages for the five new arrays each round, not the sharing or embedding.

Writes benchmarks/results/imaging.json: share_embed_mb_s, recover_mb_s, psnr_db,
speedup_vs_pure_python (and share_embed_new_arrays_mb_s).
"""

from __future__ import annotations

import os
import random
import statistics

import numpy as np

import common
from veil.core.metrics import psnr, ssim
from veil.imaging import gf256
from veil.imaging.images import hide_share, recover_image, share_image
from veil.imaging.shamir import Share
from veil.imaging.stego import embed, extract

KEY = b"\x01" * 32


def veil_round(image, covers):
    def share_embed(inplace: bool = False):
        shares = share_image(image, 3, 5)
        if inplace:  # into the cover arrays themselves, as a dealer holding decoded covers can
            return [embed(c, s.to_bytes(), KEY, out=c) for s, c in zip(shares, covers, strict=True)]
        return [hide_share(s, c, KEY) for s, c in zip(shares, covers, strict=True)]

    def recover(stegos):
        return recover_image([Share.from_bytes(extract(s, KEY)) for s in stegos[:3]])[0]

    return share_embed, recover


def pure_python_share_embed(secret: bytes, covers: list[list[int]], k=3, n=5):
    """Byte-by-byte Shamir with Python ints and bit-by-bit LSB writes: the baseline."""
    mul = gf256.MUL.tolist()
    shares = [bytearray() for _ in range(n)]
    for byte in secret:
        coeffs = [random.getrandbits(8) for _ in range(k - 1)]
        for x in range(1, n + 1):
            acc = 0
            for c in reversed(coeffs):
                acc = mul[acc ^ c][x]
            shares[x - 1].append(acc ^ byte)
    order = list(range(len(covers[0])))
    random.Random(0).shuffle(order)
    out = []
    for share, cover in zip(shares, covers, strict=True):
        stego = list(cover)
        pos = 0
        for byte in share:
            for b in range(7, -1, -1):
                i = order[pos]
                stego[i] = (stego[i] & 0xFE) | ((byte >> b) & 1)
                pos += 1
        out.append(stego)
    return out


def main() -> None:
    args = common.parser("imaging", __doc__).parse_args()
    side, cover_side = (128, 300) if args.quick else (512, 1200)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 65535, (side, side), dtype=np.uint16)
    covers = [rng.integers(0, 256, (cover_side, cover_side, 3), dtype=np.uint8) for _ in range(5)]
    share_embed, recover = veil_round(image, covers)
    mb = image.nbytes / 1e6
    stegos = share_embed()
    assert np.array_equal(recover(stegos), image)
    rounds = 3 if args.quick else 7
    t_new = statistics.median(common.timed(share_embed)[0] for _ in range(rounds))
    working = [c.copy() for c in covers]  # the originals stay for PSNR
    share_in_place = veil_round(image, working)[0]
    t_share = statistics.median(
        common.timed(lambda: share_in_place(inplace=True))[0] for _ in range(rounds)
    )
    assert np.array_equal(recover(working), image)
    t_recover = statistics.median(common.timed(lambda: recover(stegos))[0] for _ in range(rounds))
    psnrs = [psnr(c, s) for c, s in zip(covers, stegos, strict=True)]
    small = os.urandom(4096)
    small_covers = [list(range(256)) * (4096 * 8 // 256 + 1) for _ in range(5)]
    t_pure = common.timed(lambda: pure_python_share_embed(small, small_covers))[0]
    pure_mb_s = len(small) / 1e6 / t_pure
    results = {
        "image": f"{side}x{side} uint16",
        "k": 3,
        "n": 5,
        "bits_per_channel": 1,
        "share_embed_mb_s": mb / t_share,
        "recover_mb_s": mb / t_recover,
        "psnr_db": min(psnrs),
        "ssim": min(ssim(c, s) for c, s in zip(covers, stegos, strict=True)),
        "pure_python_share_embed_mb_s": pure_mb_s,
        "speedup_vs_pure_python": (mb / t_share) / pure_mb_s,
        "share_embed_new_arrays_mb_s": mb / t_new,
        "share_embed_s": t_share,
        "share_embed_new_arrays_s": t_new,
        "recover_s": t_recover,
    }
    common.write_results("imaging", results, args)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
