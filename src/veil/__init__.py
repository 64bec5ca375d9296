"""veil: privacy-preserving machine learning with one report for four guarantees.

Import the packages you need (``veil.core``, ``veil.report``, ...); this module stays light
so that ``veil --help`` answers fast.
"""

__version__ = "0.1.0"
