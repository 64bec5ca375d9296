"""Arithmetic in GF(2^8) (the AES field, x^8 + x^4 + x^3 + x + 1), vectorised with tables.

Addition is XOR. Multiplication by a constant ``c`` is one lookup in ``MUL[c]`` (a 256-byte
row), so multiplying a whole byte array by a constant is a single NumPy ``take``.
"""

from __future__ import annotations

import numpy as np

_POLY = 0x11B
_GENERATOR = 3


def _tables() -> tuple[np.ndarray, np.ndarray]:
    exp = np.zeros(512, dtype=np.uint8)
    log = np.zeros(256, dtype=np.int32)
    x = 1
    for i in range(255):
        exp[i] = x
        log[x] = i
        # multiply by the generator 3 = x + 1: x*2 (xtime) xor x
        x2 = x << 1
        if x2 & 0x100:
            x2 ^= _POLY
        x = x2 ^ x
    exp[255:510] = exp[:255]
    return exp, log


EXP, LOG = _tables()


def _mul_table() -> np.ndarray:
    a = np.arange(256)
    table = EXP[(LOG[a][:, None] + LOG[a][None, :]) % 255].astype(np.uint8)
    table[0, :] = 0
    table[:, 0] = 0
    return table


MUL = _mul_table()  # MUL[a, b] = a·b


def mul(a, b) -> np.ndarray:
    """Elementwise product of two uint8 arrays (or scalars)."""
    return MUL[np.asarray(a, dtype=np.uint8), np.asarray(b, dtype=np.uint8)]


def inv(a: int) -> int:
    """Multiplicative inverse of a non-zero element."""
    if a == 0:
        raise ZeroDivisionError("0 has no inverse in GF(256)")
    return int(EXP[(255 - LOG[a]) % 255])


def scale(c: int, arr: np.ndarray) -> np.ndarray:
    """``c · arr`` for a constant ``c`` and a uint8 array: one table lookup per byte."""
    return MUL[c].take(arr)
