"""Secure computation on additive shares over Z_2^64 (input and output privacy).

Two (or three) non-colluding parties hold shares of the data and compute on them with a
dealer's correlated randomness; only the input's owner sees the result. Inference
(:mod:`~veil.encrypted.mpc.model`), training (:mod:`~veil.encrypted.mpc.train`, with the
approximations of :mod:`~veil.encrypted.mpc.approx`); see
:mod:`veil.encrypted.mpc.protocols` for the threat model and the protocols.
:class:`Session` drives every party from one place (threads), for experiments.
"""

from veil.encrypted.mpc.session import Session, Shared

__all__ = ["Session", "Shared"]
