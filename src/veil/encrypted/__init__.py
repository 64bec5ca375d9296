"""Input and output privacy: computing on data the server cannot read.

- :mod:`veil.encrypted.he`: encrypted inference with CKKS homomorphic encryption.
"""
