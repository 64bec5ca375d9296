"""How close a reconstruction came: PSNR/SSIM against the true examples (matched, since a
batch's gradient does not say which image is which), total variation (the image prior both
attacks use), and the pixels kept for the report."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from veil.core.metrics import psnr, ssim

PSNR_CAP = 100.0  # an exact reconstruction has infinite PSNR; the ledger keeps finite numbers


def tv(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation of images (..., H, W): the smoothness prior."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., 1:] - x[..., :-1]).abs().mean()


def image_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(min(psnr(a.numpy(), b.numpy()), PSNR_CAP))


def image_ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """SSIM of two (C, H, W) images: windows over H and W, channels averaged."""
    return ssim(a.permute(1, 2, 0).numpy(), b.permute(1, 2, 0).numpy())


def match(true: torch.Tensor, recon: torch.Tensor) -> list[int]:
    """For each true image, the reconstruction paired with it: the assignment with the
    highest total PSNR (a batch's update is the same for any order of its examples)."""
    gain = np.array([[image_psnr(t, r) for r in recon] for t in true])
    rows, cols = linear_sum_assignment(-gain)
    return [int(c) for _, c in sorted(zip(rows, cols, strict=True))]


def score(true: torch.Tensor, recon: torch.Tensor, threshold_db: float = 20.0) -> dict:
    """PSNR and SSIM of each reconstruction against its matched true image, the mean, and
    the fraction at or above ``threshold_db``; ``order`` gives the matching."""
    order = match(true, recon)
    p = [image_psnr(t, recon[j]) for t, j in zip(true, order, strict=True)]
    s = [image_ssim(t, recon[j]) for t, j in zip(true, order, strict=True)]
    return {
        "psnr": p,
        "ssim": s,
        "order": order,
        "mean_psnr": float(np.mean(p)),
        "recovered_fraction": float(np.mean([v >= threshold_db for v in p])),
    }


def pixels(image: torch.Tensor) -> list:
    """A (C, H, W) image in [0, 1] as 8-bit rows (H, W) or (H, W, C), for the ledger."""
    a = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    return (a[0] if a.shape[0] == 1 else a.permute(1, 2, 0)).tolist()


def best(recon: torch.Tensor, psnrs: list[float], titles: list[str], keep: int = 4) -> list:
    """The ``keep`` reconstructions with the highest PSNR, as report images."""
    top = np.argsort(psnrs)[::-1][:keep]
    return [{"title": titles[i], "pixels": pixels(recon[i])} for i in top]


def save_images(images: list[dict], path) -> None:
    """The report images side by side in one PNG (8-bit, lossless)."""
    from PIL import Image

    from veil.core.io import atomic_writer

    arrays = [np.asarray(im["pixels"], dtype=np.uint8) for im in images]
    with atomic_writer(path) as f:
        Image.fromarray(np.concatenate(arrays, axis=1)).save(f, format="PNG")
