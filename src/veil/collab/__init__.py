"""Collaborative learning: DSSGD (Shokri & Shmatikov 2015) and FedAvg, engine-free.

The algorithm lives in plain functions and classes over flat parameter vectors:
:mod:`~veil.collab.policies` (what to download and upload), :mod:`~veil.collab.server`
(the parameter server, with checkpoints), :mod:`~veil.collab.participant` (local model and
training), :mod:`~veil.collab.dssgd` and :mod:`~veil.collab.fedavg` (one exchange, and the
privacy accounting through :mod:`veil.dp`). Engines only move messages: the in-process
:func:`run` (default, deterministic) and the Flower adapter (:mod:`veil.collab.flower`).

Example::

    from veil import collab

    cfg = collab.CollabConfig(algo="dssgd", data="digits", participants=5, rounds=10,
                              dssgd=collab.DSSGDConfig(theta_up=0.1, theta_down=0.1))
    result = collab.run(cfg)
    print(result.final_accuracy, result.guarantee.claim)
"""

from veil.collab.dssgd import DSSGDConfig
from veil.collab.fedavg import FedAvgConfig
from veil.collab.participant import LocalTraining, Participant
from veil.collab.runner import CollabConfig, CollabResult, baselines, run, train
from veil.collab.server import ParameterServer
from veil.collab.updates import SparseUpdate, UpdateRejected

__all__ = [
    "CollabConfig",
    "CollabResult",
    "DSSGDConfig",
    "FedAvgConfig",
    "LocalTraining",
    "ParameterServer",
    "Participant",
    "SparseUpdate",
    "UpdateRejected",
    "baselines",
    "run",
    "train",
]
