"""Backdoor triggers (Salem et al. 2020): static (BadNets), random, and generated (BaN, c-BaN).

A trigger is an ``s``×``s`` patch of pixel values in [0, 1] stamped over an image at a
location. BadNets uses one fixed pattern at one fixed place. Random Backdoor draws the pattern
from U(0, 1) and the location from a set K each time; with several targets, each target owns
a horizontal band of rows. BaN draws the pattern from a generator fed with noise, trained
with the model; c-BaN's generator also takes the target label, so one model serves several
targets and the pattern itself says which.
"""

from __future__ import annotations

import torch
from torch import nn

from veil.core.errors import ConfigError

METHODS = ("badnets", "random", "ban", "cban")


def stamp(x: torch.Tensor, patch: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor):
    """Copy of images ``x`` (B, C, H, W) with ``patch`` (B, C, s, s) at each (row, col)."""
    out = x.clone()
    n, s = len(x), patch.shape[-1]
    step = torch.arange(s)
    r = (rows[:, None] + step)[:, :, None].expand(n, s, s)
    c = (cols[:, None] + step)[:, None, :].expand(n, s, s)
    b = torch.arange(n)[:, None, None].expand(n, s, s)
    out[b, :, r, c] = patch.permute(0, 2, 3, 1)  # indexed dims first, channels last
    return out


def default_size(shape: tuple[int, int, int]) -> int:
    """A fifth of the image's shorter side (6 on 28x28 MNIST, 2 on 8x8 digits): on MNIST,
    4x4 random triggers were missed over the digit's strokes; 6x6 reached 99%."""
    side = min(shape[1:])
    return max(1, min(side // 2, round(side / 5)))


def checkerboard(channels: int, size: int) -> torch.Tensor:
    """BadNets' fixed pattern: a black-and-white checkerboard."""
    grid = (torch.arange(size)[:, None] + torch.arange(size)[None, :]) % 2
    return grid.float().expand(channels, size, size).clone()


class Generator(nn.Module):
    """BaN / c-BaN trigger generator: noise (and, for c-BaN, a one-hot target) to a patch.

    Sizes follow the shape of Salem et al.'s design (two 64-unit branches, two 128-unit
    layers, a sigmoid patch), written here from the paper's description.
    """

    def __init__(self, noise_dim: int, channels: int, size: int, num_classes: int = 0):
        super().__init__()
        self.noise_dim, self.channels, self.size, self.num_classes = (
            noise_dim,
            channels,
            size,
            num_classes,
        )
        self.noise = nn.Sequential(nn.Linear(noise_dim, 64), nn.ReLU())
        self.label = nn.Sequential(nn.Linear(num_classes, 64), nn.ReLU()) if num_classes else None
        width = 128 if num_classes else 64
        self.body = nn.Sequential(
            nn.Linear(width, 128),
            nn.ReLU(),
            nn.Linear(128, 128),
            nn.ReLU(),
            nn.Linear(128, channels * size * size),
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        h = self.noise(z)
        if self.label is not None:
            onehot = nn.functional.one_hot(targets, self.num_classes).float()
            h = torch.cat([h, self.label(onehot)], dim=1)
        return self.body(h).view(-1, self.channels, self.size, self.size)


class TriggerSet:
    """Draws triggers and locations for one attack; see the module docstring."""

    def __init__(
        self,
        method: str,
        shape: tuple[int, int, int],
        targets: list[int],
        size: int,
        num_classes: int,
        noise_dim: int = 16,
    ):
        if method not in METHODS:
            raise ConfigError(
                f"unknown backdoor method {method!r}; use one of {', '.join(METHODS)}"
            )
        c, h, w = shape
        if not 1 <= size <= min(h, w) // 2:
            raise ConfigError(f"trigger size must be in 1..{min(h, w) // 2} for {h}x{w} images")
        if not targets or any(not 0 <= t < num_classes for t in targets):
            raise ConfigError(f"targets must be class indices in 0..{num_classes - 1}")
        if method in ("badnets", "ban") and len(targets) != 1:
            raise ConfigError(f"{method} has one target; c-ban or random take several")
        if method == "random" and len(targets) > (h - size + 1):
            raise ConfigError("too many targets for one row band each")
        self.method, self.shape, self.targets, self.size = method, shape, list(targets), size
        self.generator = None
        if method in ("ban", "cban"):
            classes = num_classes if method == "cban" else 0
            self.generator = Generator(noise_dim, c, size, classes)

    def locations(self, targets: torch.Tensor, gen: torch.Generator):
        """Row and column of each trigger: fixed (BadNets), in the target's band (random),
        anywhere (BaN, c-BaN)."""
        _, h, w = self.shape
        n, s = len(targets), self.size
        if self.method == "badnets":
            return torch.full((n,), h - s - 1), torch.full((n,), w - s - 1)
        cols = torch.randint(0, w - s + 1, (n,), generator=gen)
        if self.method == "random":
            bands = len(self.targets)
            band = (h - s + 1) // bands
            which = torch.tensor([self.targets.index(int(t)) for t in targets])
            rows = which * band + torch.randint(0, band, (n,), generator=gen)
        else:
            rows = torch.randint(0, h - s + 1, (n,), generator=gen)
        return rows, cols

    def patches(self, targets: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """One trigger pattern per target in ``targets`` (differentiable for BaN/c-BaN)."""
        c, s, n = self.shape[0], self.size, len(targets)
        if self.method == "badnets":
            return checkerboard(c, s).expand(n, c, s, s)
        if self.method == "random":
            return torch.rand((n, c, s, s), generator=gen)
        z = torch.rand((n, self.generator.noise_dim), generator=gen)
        return self.generator(z, targets if self.method == "cban" else None)

    def spread(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """How different the generator's patterns are (differentiable); training pushes it
        up. c-BaN: between the patterns one noise draw gives for different targets, so the
        pattern itself says which target it serves (without it both targets' patterns
        stayed alike and the model sent both to one target: ASR 0.3% for the other,
        measured). BaN: between the patterns of two noise draws, so the triggers stay
        dynamic (without it the generator collapsed to a constant white square, its sigmoid
        saturated and learning stopped; a white square is invisible over a white stroke,
        which cost 3.5 points of attack success, measured)."""
        z = torch.rand((n, self.generator.noise_dim), generator=gen)
        if self.method == "ban":
            other = torch.rand((n, self.generator.noise_dim), generator=gen)
            return (self.generator(z) - self.generator(other)).abs().mean()
        per_target = [self.generator(z, torch.full((n,), t)) for t in self.targets]
        pairs = [(a, b) for i, a in enumerate(per_target) for b in per_target[i + 1 :]]
        return torch.stack([(a - b).abs().mean() for a, b in pairs]).mean()

    def apply(self, x: torch.Tensor, targets: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        rows, cols = self.locations(targets, gen)
        return stamp(x, self.patches(targets, gen), rows, cols)
