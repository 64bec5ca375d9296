"""Medical image sharing: threshold secret sharing hidden in cover images (Vignesh et al. 2019).

- :mod:`veil.imaging.shamir`: authenticated (k, n) Shamir sharing of bytes over GF(2^8).
- :mod:`veil.imaging.stego`: LSB embedding in lossless covers, keyed order, PSNR/SSIM.
- :mod:`veil.imaging.images`: images (PNG/TIFF, 8/16-bit) to shares and back, exactly.

Interface for ML on shares: :func:`xor_share` gives each of k holders an XOR share of the
image bytes (its Lagrange term at 0), which ``veil.encrypted.mpc`` turns into arithmetic
shares and classifies without reconstructing the image.
"""

from veil.imaging.shamir import Recovered, Share, ShareError, combine, split, xor_share

__all__ = ["Recovered", "Share", "ShareError", "combine", "split", "xor_share"]
