"""Backdoor attacks and detectors (Salem et al. 2020; Gao et al. 2019).

- :mod:`~veil.audit.backdoor.triggers`: BadNets, Random Backdoor, BaN and c-BaN triggers;
- :mod:`~veil.audit.backdoor.attack`: train a backdoored model, measure attack success;
- :mod:`~veil.audit.backdoor.strip`: STRIP, the run-time detector of triggered inputs;
- :mod:`~veil.audit.backdoor.neural_cleanse`: Neural Cleanse, a model scan (per-label
  reverse-engineered triggers, MAD anomaly index);
- :mod:`~veil.audit.backdoor.abs_scan`: ABS-lite, a model scan (neuron stimulation,
  reverse-engineered triggers of the suspicious neurons, REASR).
"""

from veil.audit.backdoor.abs_scan import AbsConfig, AbsResult, abs_scan
from veil.audit.backdoor.attack import AttackConfig, Backdoored, attack_success, train_backdoored
from veil.audit.backdoor.neural_cleanse import CleanseConfig, CleanseResult, neural_cleanse
from veil.audit.backdoor.strip import StripResult, mean_entropy, strip
from veil.audit.backdoor.triggers import METHODS, TriggerSet

__all__ = [
    "METHODS",
    "AbsConfig",
    "AbsResult",
    "AttackConfig",
    "Backdoored",
    "CleanseConfig",
    "CleanseResult",
    "StripResult",
    "TriggerSet",
    "abs_scan",
    "attack_success",
    "mean_entropy",
    "neural_cleanse",
    "strip",
    "train_backdoored",
]
