"""Medical image sharing: threshold secret sharing hidden in cover images (Vignesh et al. 2019).

- :mod:`veil.imaging.shamir`: authenticated (k, n) Shamir sharing of bytes over GF(2^8).
- :mod:`veil.imaging.stego`: LSB embedding in lossless covers, keyed order, PSNR/SSIM.
- :mod:`veil.imaging.images`: images (PNG/TIFF, 8/16-bit) to shares and back, exactly.

Interface for ML on shares (the MPC issue): :func:`shamir.combine` is the only way from
shares to pixels today; converting Shamir shares to the MPC package's additive sharing
(each holder multiplies its share by its Lagrange coefficient at 0) belongs there.
"""

from veil.imaging.shamir import Recovered, Share, ShareError, combine, split

__all__ = ["Recovered", "Share", "ShareError", "combine", "split"]
