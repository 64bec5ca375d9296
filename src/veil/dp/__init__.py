"""Differential privacy: mechanisms, tight accounting, and DP-SGD faster than Opacus.

- :mod:`veil.dp.mechanisms`: Laplace, Gaussian (analytic calibration), sparse vector.
- :mod:`veil.dp.accounting`: PLD (default, tight) and RDP accountants over mixed events.
- :mod:`veil.dp.persample`: per-sample gradient engines (``layers``, ``vmap``, ``opacus``).
- :mod:`veil.dp.dpsgd`: DP-SGD training, :func:`train`, returning a ``Guarantee``.
"""

from veil.dp.accounting import (
    Accountant,
    GaussianEvent,
    LaplaceEvent,
    PureEvent,
    calibrate_sigma,
    epsilon,
)
from veil.dp.dpsgd import DPConfig, DPResult, train
from veil.dp.mechanisms import (
    analytic_gaussian_sigma,
    gaussian,
    laplace,
    make_rng,
    sparse_vector,
)
from veil.dp.persample import check_model, make_engine, replace_batchnorm

__all__ = [
    "Accountant",
    "DPConfig",
    "DPResult",
    "GaussianEvent",
    "LaplaceEvent",
    "PureEvent",
    "analytic_gaussian_sigma",
    "calibrate_sigma",
    "check_model",
    "epsilon",
    "gaussian",
    "laplace",
    "make_engine",
    "make_rng",
    "replace_batchnorm",
    "sparse_vector",
    "train",
]
