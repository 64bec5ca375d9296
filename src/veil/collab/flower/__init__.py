"""The Flower engine: veil's DSSGD and FedAvg on real Flower processes (Message API).

:func:`run` starts a SuperLink and one node per participant on 127.0.0.1, runs the veil app
(:mod:`~veil.collab.flower.server_app`, :mod:`~veil.collab.flower.client_app`) and stops
every process by PID. :mod:`~veil.collab.flower.node` explains why veil runs ClientApp tasks
in a long-lived node process, and what that saves.
"""


def run(cfg, **kw):
    """Run a :class:`veil.collab.CollabConfig` on a local Flower cluster."""
    from veil.collab.flower.launcher import run as launch

    return launch(cfg, **kw)
