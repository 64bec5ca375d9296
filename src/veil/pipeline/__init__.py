"""``veil run``: scenario files of steps, checked as a graph, run into one ledger and report.

``load(path)`` reads and validates a scenario; ``run(scenario, out)`` runs it. Packages add
step kinds with :func:`register_step`.
"""

from veil.pipeline.runner import check_graph, run
from veil.pipeline.scenario import Scenario, StepConfig, bundled, load, parse, ref
from veil.pipeline.steps import Artifact, RunContext, kinds, register_step

__all__ = [
    "Artifact",
    "RunContext",
    "Scenario",
    "StepConfig",
    "bundled",
    "check_graph",
    "kinds",
    "load",
    "parse",
    "ref",
    "register_step",
    "run",
]
