"""Layers both encrypted engines compile: the affine ones, read off as exact matrices.

Linear, Conv1d/2d, AvgPool1d/2d, Flatten, BatchNorm (eval mode), Dropout and Identity are
affine maps of the flattened input; :func:`probe_affine` applies a layer to the unit vectors
to get its matrix and bias exactly, and :meth:`Affine.then` composes neighbours, so a
BatchNorm folds into the layer before it. HE (:mod:`veil.encrypted.he`) and MPC
(:mod:`veil.encrypted.mpc`) differ only in the non-linear layers they accept.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from veil.core.errors import VeilError

AFFINE_LAYERS = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.Flatten,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.Dropout,
    nn.Identity,
)


@dataclass
class Affine:
    """``y = weight @ x + bias``; ``layers`` names the torch layers folded into it."""

    weight: np.ndarray
    bias: np.ndarray
    layers: tuple[str, ...] = ()

    @property
    def shape(self) -> tuple[int, int]:
        return self.weight.shape  # type: ignore[return-value]

    def max_row_nonzeros(self) -> int:
        return int((self.weight != 0).sum(axis=1).max())

    def apply(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weight.T + self.bias

    def then(self, other: Affine) -> Affine:
        """This map followed by ``other``, as one map."""
        return Affine(
            other.weight @ self.weight,
            other.weight @ self.bias + other.bias,
            self.layers + other.layers,
        )


def leaves(module: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    if isinstance(module, nn.Sequential):
        for name, child in module.named_children():
            yield from leaves(child, f"{prefix}{name}.")
        return
    name = prefix.rstrip(".") or type(module).__name__
    if any(True for _ in module.children()):
        raise VeilError(
            f"layer {name} ({type(module).__name__}) is not a plain sequence of layers; "
            "HE compiles nn.Sequential models of supported layers"
        )
    yield name, module


def probe_affine(module: nn.Module, shape: tuple[int, ...], name: str) -> tuple[Affine, tuple]:
    """The exact affine map of a linear layer, read off by applying it to the unit vectors."""
    layer = copy.deepcopy(module).double().eval()
    n = math.prod(shape)
    with torch.no_grad():
        try:
            zero = layer(torch.zeros(1, *shape, dtype=torch.float64))
            basis = layer(torch.eye(n, dtype=torch.float64).reshape(n, *shape))
        except RuntimeError as e:
            raise VeilError(f"layer {name} cannot take inputs of shape {shape}: {e}") from e
    bias = zero.reshape(-1).numpy()
    weight = (basis.reshape(n, -1).numpy() - bias).T.copy()
    return Affine(weight, bias.copy(), (name,)), tuple(zero.shape[1:])
