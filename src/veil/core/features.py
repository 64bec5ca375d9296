"""Fixed, data-independent feature extractors: the 2-D scattering transform (ScatterNet).

Tramèr & Boneh (2021) showed that DP-SGD on ScatterNet features (Mallat 2012; Oyallon &
Mallat 2015) beats end-to-end private CNNs: the features cost no privacy (they use no
data) and leave fewer parameters to noise. This is our own FFT implementation of the
Morlet scattering transform up to order 2, with the filter bank of Kymatio (Andreux et al.
2020): J scales, L angles, 1 + JL + L²J(J-1)/2 channels per input channel, spatial size
divided by 2^J. It computes every path at the padded full resolution and subsamples only at
the end (simpler, slightly more work than Kymatio's multi-resolution scheme).

Modules marked ``frozen_features = True`` have no trainable parameters and are pure
functions of one example, so trainers may precompute them once per data set.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


def gabor_2d(size: int, sigma: float, theta: float, xi: float, slant: float = 1.0) -> np.ndarray:
    """A periodised 2-D Gabor filter on a size×size grid (complex), unit mass envelope."""
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    rot_inv = rot.T
    curv = rot @ np.diag([1.0, slant**2]) @ rot_inv / (2 * sigma**2)
    out = np.zeros((size, size), dtype=np.complex128)
    for ex in (-2, -1, 0, 1, 2):
        for ey in (-2, -1, 0, 1, 2):
            xx, yy = np.mgrid[ex * size : (ex + 1) * size, ey * size : (ey + 1) * size]
            arg = -(curv[0, 0] * xx**2 + (curv[0, 1] + curv[1, 0]) * xx * yy + curv[1, 1] * yy**2)
            arg = arg + 1j * (xx * xi * math.cos(theta) + yy * xi * math.sin(theta))
            out += np.exp(arg)
    return out / (2 * math.pi * sigma**2 / slant)


def morlet_2d(size: int, sigma: float, theta: float, xi: float, slant: float) -> np.ndarray:
    """A Gabor filter minus its envelope times the constant that makes its mean zero."""
    wave = gabor_2d(size, sigma, theta, xi, slant)
    envelope = gabor_2d(size, sigma, theta, 0.0, slant)
    return wave - (wave.sum() / envelope.sum()) * envelope


def filter_bank(size: int, J: int, L: int) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Fourier transforms of the wavelets ψ_{j,θ} (J·L, size, size) and the low-pass φ_J."""
    psis, index = [], []
    for j in range(J):
        for t in range(L):
            theta = (int(L - L / 2 - 1) - t) * math.pi / L
            psi = morlet_2d(size, 0.8 * 2**j, theta, 3.0 / 4.0 * math.pi / 2**j, 4.0 / L)
            psis.append(np.fft.fft2(psi).real)
            index.append((j, t))
    phi = np.fft.fft2(gabor_2d(size, 0.8 * 2 ** (J - 1), 0.0, 0.0)).real
    return (
        torch.tensor(np.stack(psis), dtype=torch.float32),
        torch.tensor(phi, dtype=torch.float32),
        index,
    )


def _periodize(spectrum: torch.Tensor, k: int) -> torch.Tensor:
    """Subsample by ``k`` in space, done in Fourier: average the k×k aliased copies."""
    if k == 1:
        return spectrum
    *lead, m, n = spectrum.shape
    return spectrum.reshape(*lead, k, m // k, k, n // k).mean(dim=(-4, -2))


class Scattering2D(nn.Module):
    """Scattering transform of images (B, C, H, W) to (B, C·K, H/2^J, W/2^J), K channels per
    input channel: order 0, JL of order 1, L²J(J-1)/2 of order 2.

    Computed as Kymatio does, at decreasing resolutions: a first-order path at scale j1
    lives at 1/2^j1 of the padded size, a second-order one at 1/2^j2.
    """

    frozen_features = True

    def __init__(self, input_shape: tuple[int, int, int], J: int = 2, L: int = 8):
        super().__init__()
        c, h, w = input_shape
        if h != w or h % 2**J:
            raise ValueError(f"scattering needs square images with side divisible by {2**J}")
        self.J, self.L, self.channels, self.side = J, L, c, h
        self.padded = ((h + 2**J) // 2**J + 1) * 2**J
        psi, phi, index = filter_bank(self.padded, J, L)
        self.index = index
        for j in range(J + 1):  # filters at each resolution 2^-j
            self.register_buffer(f"psi{j}", _periodize(psi, 2**j), persistent=False)
            self.register_buffer(f"phi{j}", _periodize(phi, 2**j), persistent=False)

    @property
    def out_channels(self) -> int:
        n1 = self.J * self.L
        return self.channels * (1 + n1 + self.L**2 * self.J * (self.J - 1) // 2)

    def output_shape(self) -> tuple[int, int, int]:
        side = self.side // 2**self.J
        return (self.out_channels, side, side)

    def _filters(self, kind: str, res: int) -> torch.Tensor:
        return getattr(self, f"{kind}{res}")

    def _smooth(self, spectrum: torch.Tensor, res: int) -> torch.Tensor:
        """Low-pass at resolution ``res``, down to 2^-J, cropped to the unpadded image."""
        low = _periodize(spectrum * self._filters("phi", res), 2 ** (self.J - res))
        out = torch.fft.ifft2(low).real
        crop = (self.padded - self.side) // 2 // 2**self.J
        side = self.side // 2**self.J
        return out[..., crop : crop + side, crop : crop + side]

    def _band(self, spectrum: torch.Tensor, psi: torch.Tensor, k: int) -> torch.Tensor:
        """|signal * ψ| subsampled by ``k``, returned as a spectrum."""
        return torch.fft.fft2(torch.fft.ifft2(_periodize(spectrum * psi, k)).abs())

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = (self.padded - self.side) // 2
        x0 = torch.fft.fft2(nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect"))
        outs = [self._smooth(x0, 0)]  # (B, C, s, s)
        L = self.L
        for j1 in range(self.J):
            psi1 = self._filters("psi", 0)[j1 * L : (j1 + 1) * L]
            u1 = self._band(x0.unsqueeze(2), psi1, 2**j1)  # (B, C, L, P/2^j1, P/2^j1)
            outs.append(self._smooth(u1, j1).flatten(1, 2))
            for j2 in range(j1 + 1, self.J):
                psi2 = self._filters("psi", j1)[j2 * L : (j2 + 1) * L]
                u2 = self._band(u1.unsqueeze(3), psi2, 2 ** (j2 - j1))  # (B, C, L, L, ...)
                outs.append(self._smooth(u2, j2).flatten(1, 3))
        return torch.cat(outs, dim=1)
