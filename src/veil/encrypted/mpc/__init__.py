"""Secure two-party computation on additive shares over Z_2^64 (input and output privacy).

Two non-colluding parties hold shares of the data and compute on them with a dealer's
correlated randomness; only the input's owner sees the result. See
:mod:`veil.encrypted.mpc.protocols` for the threat model and the protocols.
"""
