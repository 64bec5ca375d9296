"""Clinical text de-identification: find PHI, replace it consistently, score a tagger.

``deidentify(text)`` with the shipped tagger; :mod:`~veil.deid.corpus` reads the PhysioNet
deid format and JSONL; :mod:`~veil.deid.tagger` is the BiLSTM-CRF; :mod:`~veil.deid.rules`
the precise patterns; :mod:`~veil.deid.surrogates` the keyed stand-ins;
:mod:`~veil.deid.evaluate` the scores; :mod:`~veil.deid.collab` training across sites.
"""

from veil.deid.deidentify import Deidentifier, Result, deidentify

__all__ = ["Deidentifier", "Result", "deidentify"]
