"""Smooth functions on shares for secure training: exp, reciprocal, softmax.

Each is a fixed number of products (no comparison beyond the softmax's max), so its cost in
rounds is known in advance:

- ``exp(x)``: the limit (1 + x/2^n)^(2^n), n squarings (n rounds); for x in [-2^n, 0]
  the relative error is about x²/2^(n+1) plus 2^n units of rounding, so n defaults to half
  the fractional bits (8 at 16 bits: 0.4% of rounding, 1.8% off at x = -3, as CrypTen; 10
  at 20 bits). The softmax only feeds it x - max(x) <= 0.
- ``reciprocal(x)`` for x in [1, upper]: Newton's iteration y <- y (2 - x y) from
  y0 = 1/upper; the error 1 - x·y squares at each step from at most 1 - 1/upper, so the
  step count that reaches the fixed-point resolution is computed, not guessed (2 rounds
  each).
- ``softmax(x)`` over the last dimension: max by comparisons (ceil(log2 n) levels),
  exp of the differences, their sum (local), its reciprocal (the sum lies in [1, n]).
"""

from __future__ import annotations

import math

import torch

from veil.encrypted.mpc.protocols import Party


def exp(party: Party, x: torch.Tensor, squarings: int | None = None) -> torch.Tensor:
    """Shares of e^x for x in [-2^squarings, 0] (squarings: half the fractional bits)."""
    squarings = party.frac // 2 if squarings is None else squarings
    y = party.truncate(x, squarings) + party.public(1.0, tuple(x.shape))
    for _ in range(squarings):
        y = party.mul(y, y)
    return y


def newton_steps(upper: float, frac: int) -> int:
    """Newton steps for 1/x on [1, upper] to reach an error below 2^-frac."""
    if upper <= 1:
        return 1
    start = -math.log(1 - 1 / upper)  # -log of the first error
    return max(1, math.ceil(math.log2(frac * math.log(2) / start)))


def reciprocal(party: Party, x: torch.Tensor, upper: float) -> torch.Tensor:
    """Shares of 1/x for x in [1, upper]."""
    y = party.public(1 / upper, tuple(x.shape))
    two = party.public(2.0, tuple(x.shape))
    for _ in range(newton_steps(upper, party.frac)):
        y = party.mul(y, two - party.mul(x, y))
    return y


def softmax(party: Party, x: torch.Tensor) -> torch.Tensor:
    """Shares of softmax over the last dimension."""
    e = exp(party, x - party.max_last(x).unsqueeze(-1))
    inv = reciprocal(party, e.sum(-1, keepdim=True), upper=x.shape[-1])
    return party.mul(e, inv.expand_as(e).contiguous())
