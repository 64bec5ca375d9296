"""Image similarity metrics shared by packages: PSNR and SSIM.

Used for stego images against their covers (``veil.imaging``) and reconstructions against
the true examples (``veil.audit``).
"""

from __future__ import annotations

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB (peak = the dtype's maximum); inf when equal."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    peak = float(np.iinfo(a.dtype).max) if np.issubdtype(a.dtype, np.integer) else 1.0
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray, window: int = 7) -> float:
    """Mean structural similarity (Wang et al. 2004) over 7x7 windows, channels averaged."""
    from scipy.ndimage import uniform_filter

    peak = float(np.iinfo(a.dtype).max) if np.issubdtype(a.dtype, np.integer) else 1.0
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    x, y = a.astype(np.float64), b.astype(np.float64)
    size = (window, window) + (1,) * (x.ndim - 2)
    mx, my = uniform_filter(x, size), uniform_filter(y, size)
    vx = uniform_filter(x * x, size) - mx * mx
    vy = uniform_filter(y * y, size) - my * my
    cov = uniform_filter(x * y, size) - mx * my
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())
