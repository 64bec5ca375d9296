"""Collaborative PHI-tagger training across sites with DSSGD (Festag & Spreckelsen 2020).

Each site (hospital) keeps its notes and a local tagger; :mod:`veil.collab`'s engine-free
DSSGD moves only parameters: per exchange a site downloads θd of the global parameters,
trains one local epoch, and uploads at most θu of its changes, truncated to [−γ, γ]. The
sites agree up front on the word vocabulary, which each builds from words seen in at least
two of its own patients and never inside PHI (so the vocabulary carries no PHI), and on the
lexicon. Local training uses Adam; its moments stay at the site.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from veil.collab import DSSGDConfig
from veil.collab import dssgd as algo
from veil.collab.participant import flat, overwrite, set_flat
from veil.core.errors import ConfigError
from veil.deid.corpus import Note, split_patients
from veil.deid.encode import build_vocab
from veil.deid.lexicon import Lexicon

FESTAG = {"theta_down": 0.5, "theta_up": 0.5, "gamma": 10.0, "tau": 1e-4}


class Site:
    """One site's tagger, encoded notes and optimiser: a DSSGD participant."""

    def __init__(self, pid: int, tagger, chunks, seed: int):
        self.pid, self.tagger, self.data = pid, tagger, chunks
        self.rng = np.random.default_rng(seed)
        self.residual = None
        self.optim = torch.optim.Adam(tagger.net.parameters(), lr=tagger.opts.lr)

    def receive(self, indices: np.ndarray, values: np.ndarray) -> None:
        overwrite(self.tagger.net, indices, values)

    def train(self) -> np.ndarray:
        """One local epoch; returns the change of the flat parameters."""
        before = flat(self.tagger.net)
        self.tagger.epoch(self.data, self.optim, self.rng)
        return flat(self.tagger.net) - before


@dataclass
class CollabReport:
    rounds: int
    sites: int
    dev_f1: list[float]
    uploaded_fraction: float


def shared_vocab(sites: list[list[Note]]) -> list[str]:
    """The union of each site's own PHI-free vocabulary."""
    return sorted(set().union(*(build_vocab(notes) for notes in sites)))


def train_dssgd(
    notes: list[Note],
    lexicon: Lexicon,
    sites: int = 5,
    rounds: int = 15,
    dev: list[Note] | None = None,
    opts=None,
    config: dict | None = None,
    seed: int = 0,
    progress: Callable[[int, float | None], None] | None = None,
):
    """Split ``notes`` into ``sites`` by patient and train one tagger with DSSGD.

    Returns the tagger holding the global parameters (best dev token F1 over rounds when
    ``dev`` is given) and a :class:`CollabReport`.
    """
    from veil.deid.tagger import Options, Tagger, encoder_net, make_encoder

    opts = opts or Options()
    if opts.networks > 1:
        raise ConfigError("DSSGD trains one network; train an ensemble (networks > 1) centrally")
    cfg = DSSGDConfig(**{**FESTAG, **(config or {})})
    parts = split_patients(notes, (1.0,) * sites, seed)
    encoder = make_encoder(shared_vocab(parts), lexicon, opts)
    torch.manual_seed(opts.seed)
    start = encoder_net(encoder, opts)
    members = []
    for pid, part in enumerate(parts):
        net = encoder_net(encoder, opts)
        net.load_state_dict(start.state_dict())
        members.append(Site(pid, Tagger(net, encoder, opts), encoder.encode(part), seed + pid))
    server = cfg.server(flat(start))
    glob = Tagger(start, encoder, opts)
    best, best_params, curve, sent = -1.0, server.params.copy(), [], 0
    for r in range(rounds):
        for pid in algo.round_order("round-robin", sites, np.random.default_rng(seed + r)):
            update = algo.begin(server, members[pid], cfg, None)
            server.apply(update)
            sent += len(update.indices)
        set_flat(glob.net, server.params)
        score = glob.token_f1(dev) if dev else None
        curve.append(score)
        if score is None or score > best:
            best, best_params = (score or best), server.params.copy()
        if progress:
            progress(r + 1, score)
    set_flat(glob.net, best_params)
    size = server.params.size
    return glob, CollabReport(rounds, sites, curve, sent / (rounds * sites * size))
