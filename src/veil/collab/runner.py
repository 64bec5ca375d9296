"""The in-process engine: every participant and the server in one process, seeded, exact.

:func:`run` trains DSSGD or FedAvg over ``participants`` disjoint shards of a data set and
returns the global model, per-round history (global and per-participant test accuracy, bytes
uploaded, accepted/rejected/dropped updates) and the run's training-data ``Guarantee``.

Orders (DSSGD): ``round-robin`` (1..N each round, each sees the updates before it),
``random`` (a fresh permutation each round), ``async`` (participants at their own simulated
pace: an update is based on the version its participant downloaded, and lands after other
participants' updates; the server's staleness bound rejects the laggards).

Robustness: a participant may drop mid-round (``drop_rate``, simulated): its upload is lost,
logged and counted, and the run goes on. With ``checkpoint`` set the whole state (server,
participants, generators, history) is written atomically after every round, and ``run``
resumes from it: the result equals an uninterrupted run with the same seeds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from veil.collab import dssgd, fedavg
from veil.collab.participant import LocalTraining, Participant, flat, record_level, set_flat
from veil.collab.updates import UpdateRejected, dense_bytes
from veil.core.errors import ConfigError, VeilError
from veil.core.train import Prepared

log = logging.getLogger("veil.collab")
ALGORITHMS = ("dssgd", "fedavg")
CHECKPOINT_FORMAT = "veil-collab-run/1"
THREAT_MODEL = (
    "honest-but-curious parameter server and participants who see every shared update; "
    "each participant's local training code and randomness are trusted; no secure "
    "aggregation in the in-process engine"
)

SECURE_THREAT_MODEL = (
    "honest-but-curious server that follows the SecAgg+ protocol; it learns only the sum of "
    "the clients' quantized models unless it colludes with at least the reconstruction "
    "threshold of clients; clients' own code and randomness are trusted; no DP bound on the sum"
)


@dataclass(frozen=True)
class CollabConfig:
    """A collaborative training run: who takes part, on what, for how long, sharing what."""

    algo: str = "dssgd"
    data: str = "mnist"
    model: str = "mlp"
    model_options: dict = field(default_factory=dict)
    participants: int = 5
    partition: str = "iid"
    rounds: int = 10
    order: str = "round-robin"
    local: LocalTraining = field(default_factory=LocalTraining)
    dssgd: dssgd.DSSGDConfig = field(default_factory=dssgd.DSSGDConfig)
    fedavg: fedavg.FedAvgConfig = field(default_factory=fedavg.FedAvgConfig)
    drop_rate: float = 0.0
    limit: int | None = None
    eval_limit: int | None = None
    seed: int = 0

    def __post_init__(self):
        if self.algo not in ALGORITHMS:
            raise ConfigError(
                f"unknown algorithm {self.algo!r}; use one of {', '.join(ALGORITHMS)}"
            )
        if self.order not in dssgd.ORDERS:
            raise ConfigError(f"unknown order {self.order!r}; use one of {', '.join(dssgd.ORDERS)}")
        if self.participants < 1 or self.rounds < 1:
            raise ConfigError("participants and rounds must be at least 1")
        if not 0 <= self.drop_rate < 1:
            raise ConfigError(f"drop_rate must be in [0, 1), got {self.drop_rate}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CollabConfig:
        """The inverse of :meth:`to_dict` (e.g. after a JSON round trip)."""
        d = dict(d)
        return cls(
            local=LocalTraining(**d.pop("local")),
            dssgd=dssgd.DSSGDConfig(**d.pop("dssgd")),
            fedavg=fedavg.FedAvgConfig(**d.pop("fedavg")),
            **d,
        )

    @classmethod
    def from_flat(cls, **options) -> CollabConfig:
        """A config from flat names (the CLI's and the ``collab-train`` step's): the
        ``local_*``, ``fedavg_*`` names and DSSGD's own fields go to their sub-configs."""
        local = {k[6:]: options.pop(k) for k in list(options) if k.startswith("local_")}
        fed = {k[7:]: options.pop(k) for k in list(options) if k.startswith("fedavg_")}
        names = set(dssgd.DSSGDConfig.__dataclass_fields__)
        ds = {k: options.pop(k) for k in list(options) if k in names}
        unknown = set(options) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown collaborative-training settings: {sorted(unknown)}")
        return cls(
            local=LocalTraining(**local),
            dssgd=dssgd.DSSGDConfig(**ds),
            fedavg=fedavg.FedAvgConfig(**fed),
            **options,
        )


@dataclass
class CollabResult:
    """The global model, the per-round history, the guarantee, and run totals."""

    model: nn.Module
    history: list[dict]
    guarantee: object  # veil.core.guarantees.Guarantee
    totals: dict
    spec: object = None  # veil.core.models.ModelSpec
    train: object = None
    test: object = None

    @property
    def final_accuracy(self) -> float:
        return self.history[-1]["global_accuracy"]

    def curves(self) -> dict[str, list[float]]:
        """Per round: global test accuracy, each participant's, and bytes uploaded."""
        out = {"global_accuracy": [h["global_accuracy"] for h in self.history]}
        if "participant_accuracy" in self.history[0]:
            for i in range(len(self.history[0]["participant_accuracy"])):
                out[f"participant_{i + 1}_accuracy"] = [
                    h["participant_accuracy"][i] for h in self.history
                ]
        out["bytes_uploaded"] = [h["bytes_up"] for h in self.history]
        return out

    def record(self, step: str, baselines: dict | None = None):
        """The ledger Record of this run (kind ``collab``), for the report."""
        from veil.core.guarantees import Record

        details = {"totals": _jsonable(self.totals)}
        if baselines:
            details["baselines"] = baselines
        metrics = {"test_accuracy": self.final_accuracy}
        return Record("collab", step, metrics=metrics, curves=self.curves(), details=details)


class Run:
    """The mutable state of one in-process run (what a checkpoint holds)."""

    def __init__(self, cfg: CollabConfig, quiet: bool | None):
        self.cfg, self.quiet = cfg, quiet
        p = prepared_for(cfg)
        self.spec, self.train_data, self.test = p.spec, p.train, p.test
        self.global_model = p.model
        init = flat(p.model)
        self.size = init.size
        self.participants = participants_for(cfg, p)
        self.server = cfg.dssgd.server(init)
        self.global_params = init.copy()  # FedAvg's global model
        self.rng = np.random.default_rng(cfg.seed + 7919)
        self.noise_rng = np.random.default_rng(cfg.seed + 104729)
        self.round = 0
        self.history: list[dict] = []
        self.uploads = [0] * cfg.participants  # accepted updates per participant
        self.attempts = [0] * cfg.participants  # async: exchanges begun per participant
        self.dropped = 0
        self.pending: dict[int, tuple[float, object]] = {}  # async: pid -> (finish, update)
        self.clock = 0.0
        self.eps_u = dssgd.upload_epsilon(cfg.dssgd, cfg.rounds) if cfg.dssgd.private else None

    # --- checkpoint ------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        from veil.core.io import save_arrays

        meta = {"config": _jsonable(self.cfg.to_dict())}
        arrays, meta["server"] = self.server.state(prefix="server.")
        arrays["global"] = self.global_params
        meta["participants"] = []
        for p in self.participants:
            a, m = p.state()
            arrays |= a
            meta["participants"].append(m)
        for pid, (finish, update) in self.pending.items():
            arrays[f"pending.{pid}.indices"] = update.indices
            arrays[f"pending.{pid}.values"] = update.values
            meta.setdefault("pending", {})[str(pid)] = [finish, update.base_version]
        meta |= {
            "round": self.round,
            "history": self.history,
            "uploads": self.uploads,
            "attempts": self.attempts,
            "dropped": self.dropped,
            "clock": self.clock,
            "rng": self.rng.bit_generator.state,
            "noise_rng": self.noise_rng.bit_generator.state,
        }
        save_arrays(path, arrays, meta, CHECKPOINT_FORMAT)

    def load(self, path: Path) -> None:
        from veil.collab.server import ParameterServer
        from veil.collab.updates import SparseUpdate
        from veil.core.io import load_arrays

        arrays, meta = load_arrays(path, CHECKPOINT_FORMAT)
        saved = dict(meta["config"], rounds=self.cfg.rounds)
        if saved != _jsonable(self.cfg.to_dict()):
            raise VeilError(
                f"checkpoint {path} is from a run with other settings; resume with the same "
                "settings (only --rounds may grow), or start afresh with another checkpoint path"
            )
        self.server = ParameterServer.from_state(arrays, meta["server"], prefix="server.")
        self.global_params = arrays["global"].copy()
        for p, m in zip(self.participants, meta["participants"], strict=True):
            p.load_state(arrays, m)
        self.pending = {}
        for pid, (finish, base) in meta.get("pending", {}).items():
            i = int(pid)
            update = SparseUpdate(
                i,
                arrays[f"pending.{pid}.indices"],
                arrays[f"pending.{pid}.values"],
                base,
                len(self.participants[i].data),
            )
            self.pending[i] = (finish, update)
        self.round, self.history = meta["round"], meta["history"]
        self.uploads, self.attempts = meta["uploads"], meta["attempts"]
        self.dropped, self.clock = meta["dropped"], meta["clock"]
        self.rng.bit_generator.state = meta["rng"]
        self.noise_rng.bit_generator.state = meta["noise_rng"]

    @property
    def params(self) -> np.ndarray:
        """The global parameters: the parameter server's (DSSGD) or FedAvg's."""
        return self.server.params if self.cfg.algo == "dssgd" else self.global_params

    # --- one round -------------------------------------------------------------------------

    def drops(self, pid: int) -> bool:
        """Whether participant ``pid`` drops now (simulated failure); logs and counts it."""
        if self.cfg.drop_rate and self.rng.random() < self.cfg.drop_rate:
            self.dropped += 1
            log.warning("participant %d dropped out of round %d", pid, self.round + 1)
            return True
        return False

    def deliver(self, update) -> int:
        """Hand ``update`` to the server; its bytes (0 if rejected)."""
        try:
            self.server.apply(update)
        except UpdateRejected as e:
            log.warning("rejected: %s", e)
            return 0
        self.uploads[update.participant] += 1
        return update.nbytes(self.size)

    def dssgd_round(self) -> int:
        sent = 0
        for pid in dssgd.round_order(self.cfg.order, self.cfg.participants, self.rng):
            p = self.participants[pid]
            update = dssgd.begin(self.server, p, self.cfg.dssgd, self.eps_u)
            if not self.drops(p.pid):
                sent += self.deliver(update)
        return sent

    def async_round(self) -> int:
        """N update arrivals in simulated time; each participant works at its own pace."""
        if not self.pending and self.round == 0:
            for p in self.participants:
                self.start(p)
        sent = 0
        for _ in range(self.cfg.participants):
            if not self.pending:
                break
            pid = min(self.pending, key=lambda i: (self.pending[i][0], i))
            finish, update = self.pending.pop(pid)
            self.clock = finish
            if not self.drops(pid):
                sent += self.deliver(update)
            if self.attempts[pid] < self.cfg.rounds:
                self.start(self.participants[pid])
        return sent

    def start(self, p: Participant) -> None:
        """Participant ``p`` downloads now and will upload after its simulated work time."""
        update = dssgd.begin(self.server, p, self.cfg.dssgd, self.eps_u)
        self.attempts[p.pid] += 1
        pace = 1.0 + p.pid / max(1, self.cfg.participants - 1)  # 1x .. 2x the fastest
        self.pending[p.pid] = (self.clock + pace * self.rng.uniform(0.8, 1.2), update)

    def fedavg_round(self) -> int:
        cfg = self.cfg.fedavg
        clients = fedavg.sample_clients(self.cfg.participants, cfg, self.rng)
        deltas, weights, sent = [], [], 0
        for pid in clients:
            p = self.participants[pid]
            set_flat(p.model, self.global_params)
            delta = p.train()
            if self.drops(pid):
                continue
            deltas.append(delta)
            weights.append(len(p.data))
            self.uploads[pid] += 1
            sent += dense_bytes(self.size)
        self.global_params = fedavg.next_global(
            self.global_params, deltas, weights, self.cfg.participants, cfg, self.noise_rng
        )
        return sent

    def evaluate(self, sent: int, seconds: float) -> dict:
        from veil.core.train import evaluate

        set_flat(self.global_model, self.params)
        row = {
            "round": self.round,
            "global_accuracy": evaluate(self.global_model, self.test, device="cpu")["accuracy"],
            "bytes_up": sent,
            "accepted": self.server.stats.accepted if self.cfg.algo == "dssgd" else None,
            "rejected": sum(self.server.stats.rejected.values()),
            "dropped": self.dropped,
            "seconds": round(seconds, 3),
        }
        if self.cfg.algo == "dssgd":
            row["participant_accuracy"] = [
                evaluate(p.model, self.test, device="cpu")["accuracy"] for p in self.participants
            ]
        return row


def run(
    cfg: CollabConfig,
    *,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    on_round: Callable[[dict], None] | None = None,
    ledger=None,
    step: str = "",
    quiet: bool | None = None,
) -> CollabResult:
    """Train collaboratively in this process; see the module docstring.

    ``checkpoint``: a file written after every round. ``resume``: continue from it if it
    exists. ``on_round(row)`` is called with each round's history row.
    """
    from veil.core.progress import progress

    if cfg.fedavg.secure and cfg.algo == "fedavg":
        raise ConfigError("secure aggregation runs on Flower's SecAgg+: use engine='flower'")
    state = Run(cfg, quiet)
    path = Path(checkpoint) if checkpoint else None
    if resume and path is not None and path.exists():
        state.load(path)
        log.info("resumed %s at round %d", path, state.round)
    elif path is not None and path.exists() and not resume:
        raise VeilError(f"checkpoint {path} exists; pass resume to continue it, or remove it")
    start = time.perf_counter()
    one_round = {"fedavg": state.fedavg_round}.get(cfg.algo) or (
        state.async_round if cfg.order == "async" else state.dssgd_round
    )
    with progress(f"{cfg.algo} with {cfg.participants} participants", cfg.rounds, quiet) as bar:
        bar.advance(state.round)
        while state.round < cfg.rounds:
            t0 = time.perf_counter()
            sent = one_round()
            state.round += 1
            row = state.evaluate(sent, time.perf_counter() - t0)
            state.history.append(row)
            if path is not None:
                state.save(path)
            bar.advance()
            bar.note(f"acc {row['global_accuracy']:.3f}")
            if on_round is not None:
                on_round(row)
    return _result(state, time.perf_counter() - start, ledger, step)


@dataclass
class Outcome:
    """What any engine hands back at the end: enough for the totals and the guarantee."""

    cfg: CollabConfig
    params: np.ndarray  # the global parameters
    history: list[dict]
    uploads: list[int]  # accepted updates per participant
    rejected: dict[str, int]
    dropped: int
    eps_u: float | None
    record_level: dict | None = None  # record-level (ε, δ) of local DP-SGD
    engine: str = "in-process"


def _result(state: Run, seconds: float, ledger, step: str) -> CollabResult:
    cfg = state.cfg
    params = state.params
    record = None
    if cfg.local.dp_sigma is not None:
        ps = state.participants
        record = record_level(cfg.local, [p.steps_taken for p in ps], [len(p.data) for p in ps])
    outcome = Outcome(
        cfg,
        params,
        state.history,
        state.uploads,
        dict(state.server.stats.rejected),
        state.dropped,
        state.eps_u,
        record,
    )
    prepared = Prepared(state.global_model, state.spec, state.train_data, state.test)
    return finish(outcome, prepared, seconds, ledger, step)


def finish(outcome: Outcome, prepared, seconds: float, ledger, step: str) -> CollabResult:
    """The result of a run on any engine: global model, totals, guarantee (into ``ledger``)."""
    set_flat(prepared.model, outcome.params)
    size = outcome.params.size
    dense = dense_bytes(size)
    up = sum(h["bytes_up"] for h in outcome.history)
    totals = {
        "parameters": size,
        "bytes_uploaded": up,
        "dense_bytes_per_upload": dense,
        "upload_fraction": (up / max(1, sum(outcome.uploads))) / dense,
        "updates_accepted": sum(outcome.uploads),
        "updates_rejected": outcome.rejected,
        "dropped": outcome.dropped,
        "seconds": round(seconds, 3),
    }
    guarantee = _guarantee(outcome, totals, step)
    if ledger is not None:
        ledger.add(guarantee)
    return CollabResult(
        prepared.model,
        outcome.history,
        guarantee,
        totals,
        prepared.spec,
        prepared.train,
        prepared.test,
    )


def _guarantee(state: Outcome, totals: dict, step: str):
    from veil.core.guarantees import Guarantee

    cfg = state.cfg
    params = {
        "algorithm": cfg.algo,
        "participants": cfg.participants,
        "rounds": cfg.rounds,
        "order": cfg.order,
        "partition": cfg.partition,
        "local": asdict(cfg.local),
        "drop_rate": cfg.drop_rate,
        "seed": cfg.seed,
        "engine": state.engine,
    }
    numbers = {
        "test_accuracy": state.history[-1]["global_accuracy"],
        "upload_fraction": totals["upload_fraction"],
    }
    if cfg.algo == "dssgd":
        params |= {k: v for k, v in asdict(cfg.dssgd).items()}
        shared = f"at most {cfg.dssgd.theta_up:.0%} of the parameter changes per upload" + (
            f", truncated to ±{cfg.dssgd.gamma:g}" if cfg.dssgd.gamma else ""
        )
        if cfg.dssgd.private:
            most = max(state.uploads) if state.uploads else 0
            numbers |= dssgd.privacy_numbers(
                cfg.dssgd, max(most, cfg.rounds), state.eps_u, state.params.size
            )
            claim = (
                f"({numbers['epsilon']:.3g}, {cfg.dssgd.delta:g})-DP for each "
                f"participant's whole data set over the whole run; shares {shared}"
            )
        else:
            claim = f"raw data never leaves a participant; shares {shared} (no DP bound)"
    else:
        params |= asdict(cfg.fedavg)
        if cfg.fedavg.private:
            numbers |= fedavg.privacy_numbers(cfg.fedavg, cfg.rounds)
            claim = (
                f"({numbers['epsilon']:.3g}, {cfg.fedavg.delta:g})-DP for each client's "
                "whole data set (central DP on the aggregate)"
            )
        elif cfg.fedavg.secure:
            claim = (
                "raw data never leaves a client; the server learns only the sum of the "
                "clients' models each round (Flower SecAgg+ secure aggregation)"
            )
        else:
            claim = "raw data never leaves a client; full model updates are shared (no DP bound)"
    if state.record_level is not None:
        numbers |= state.record_level
        claim += f"; local DP-SGD: ({numbers['record_epsilon']:.3g}, δ)-DP per record"
    secure = cfg.algo == "fedavg" and cfg.fedavg.secure
    return Guarantee(
        guarantee="training-data",
        mechanism="DSSGD" if cfg.algo == "dssgd" else "FedAvg" + (" + SecAgg+" if secure else ""),
        claim=claim,
        threat_model=SECURE_THREAT_MODEL if secure else THREAT_MODEL,
        parameters=_jsonable(params),
        numbers=numbers,
        evidence={"totals": _jsonable(totals)},
        step=step,
    )


def prepared_for(cfg: CollabConfig):
    """The run's data (test set cut to ``eval_limit``) and its seeded initial network."""
    from veil.core.data import sample_indices
    from veil.core.train import prepare

    p = prepare(
        cfg.data, cfg.model, model_options=cfg.model_options, limit=cfg.limit, seed=cfg.seed
    )
    if cfg.eval_limit is not None:
        p.test = p.test.subset(sample_indices(len(p.test), cfg.eval_limit, cfg.seed))
    return p


def participants_for(cfg: CollabConfig, prepared, pids=None) -> list[Participant]:
    """Participants ``pids`` (default: all): each its shard of the training set (the split
    is computed once, and only the shards asked for are copied) and a copy of the initial
    network."""
    from veil.core.data import parse_scheme, partition

    pids = range(cfg.participants) if pids is None else pids
    if any(not 0 <= pid < cfg.participants for pid in pids):
        raise ConfigError(f"participant ids must be in 0..{cfg.participants - 1}")
    scheme, kw = parse_scheme(cfg.partition)
    train = prepared.train
    parts = partition(
        train.targets.numpy(), cfg.participants, scheme, keys=train.keys, seed=cfg.seed, **kw
    )
    return [
        Participant(
            pid,
            _copy_of(prepared.model),
            train.subset(parts[pid]),
            cfg.local,
            seed=cfg.seed * 1000 + pid + 1,
        )
        for pid in pids
    ]


def _copy_of(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model)


def _jsonable(obj):
    """Tuples as lists, so a config compares equal to its JSON round trip."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj


def baselines(cfg: CollabConfig, quiet: bool | None = None) -> dict:
    """Centralized (all shards pooled) and standalone (each participant alone) test accuracy,
    each trained for the same number of local passes as the collaborative run."""
    from veil.core.train import evaluate, fit

    state = Run(cfg, quiet)
    epochs = max(1, round(cfg.rounds * cfg.local.epochs))
    opts = {
        "epochs": epochs,
        "batch_size": cfg.local.batch_size,
        "lr": cfg.local.lr,
        "momentum": 0.0,
        "seed": cfg.seed,
        "device": "cpu",
        "quiet": True,
    }
    central = _copy_of(state.global_model)
    fit(central, state.train_data, **opts)
    alone = []
    for p in state.participants:
        model = _copy_of(state.global_model)
        fit(model, p.data, **opts)
        alone.append(evaluate(model, state.test, device="cpu")["accuracy"])
    return {
        "centralized_accuracy": evaluate(central, state.test, device="cpu")["accuracy"],
        "standalone_accuracy": float(np.mean(alone)),
        "standalone_accuracies": alone,
        "epochs": epochs,
    }


ENGINES = ("inprocess", "flower")


def train(cfg: CollabConfig, *, engine: str = "inprocess", **kw) -> CollabResult:
    """Run ``cfg`` on ``engine``: ``inprocess`` (:func:`run`) or ``flower`` (real processes
    on this machine, :func:`veil.collab.flower.run`)."""
    if engine == "inprocess":
        return run(cfg, **kw)
    if engine == "flower":
        from veil.collab import flower

        return flower.run(cfg, **kw)
    raise ConfigError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
