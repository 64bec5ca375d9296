"""PSNR and SSIM match their definitions on known values."""

import math

import numpy as np

from veil.core.metrics import psnr, ssim


def test_psnr_known_values():
    a = np.zeros((8, 8), dtype=np.uint8)
    assert math.isclose(psnr(a, a + 1), 10 * math.log10(255**2), rel_tol=1e-12)  # MSE = 1
    assert psnr(a, a) == float("inf")
    f = np.zeros((4, 4), dtype=np.float32)
    assert math.isclose(psnr(f, f + 0.1), 20.0, rel_tol=1e-5)  # float images: peak 1


def test_ssim_properties():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    assert math.isclose(ssim(img, img), 1.0, rel_tol=1e-12)
    noisy = np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
    noisier = np.clip(img + rng.normal(0, 60, img.shape), 0, 255).astype(np.uint8)
    assert 1 > ssim(img, noisy) > ssim(img, noisier)
    assert math.isclose(ssim(img, noisy), ssim(noisy, img), rel_tol=1e-12)


def test_ssim_known_values():
    # Flat images: no variance, so SSIM is the luminance term (2ab + C1) / (a² + b² + C1).
    a, b = np.full((16, 16), 0.5), np.full((16, 16), 0.25)
    c1 = 0.01**2
    assert math.isclose(ssim(a, b), (2 * 0.5 * 0.25 + c1) / (0.5**2 + 0.25**2 + c1), rel_tol=1e-9)
    # A pattern and its negative around the same mean: the structure term is -1 everywhere
    # the windows vary, so SSIM is negative.
    stripes = np.tile([0.25, 0.75], (16, 8))
    assert ssim(stripes, 1 - stripes) < -0.9
