"""veil's Flower ServerApp: the DSSGD parameter server (or FedAvg) over real nodes.

The algorithm is :mod:`veil.collab.dssgd` / :mod:`veil.collab.fedavg`, unchanged; this module
only moves its messages. Sequential orders send one ``train.dssgd`` message at a time and
wait for its reply; ``async`` keeps one message in flight per node with push/pull and applies
replies as they land (the staleness bound refuses laggards). A node that does not answer
within ``timeout`` seconds, or answers with an error, is counted as dropped and the run goes
on. After every round the server state and history go to the checkpoint (if asked), and at
the end the global parameters and history go to the result file the launcher reads.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

from veil.collab import dssgd
from veil.collab.flower.messages import download_content, read_update
from veil.collab.flower.node import POLL_SECONDS, cap_sleeps, short_waits
from veil.collab.updates import UpdateRejected, dense_bytes
from veil.core.errors import VeilError
from veil.core.train import Prepared

RESULT_FORMAT = "veil-collab-flower-result/1"
CHECKPOINT_FORMAT = "veil-collab-flower-server/1"
log = logging.getLogger("veil.collab.flower")
app = ServerApp()
short_waits()  # this module is imported by the flwr-serverapp process that runs the app


@app.main()
def main(grid: Grid, context: Context) -> None:
    from veil.collab.runner import CollabConfig

    rc = context.run_config
    cfg = CollabConfig.from_dict(json.loads(str(rc["veil-config"])))
    ckpt = Path(str(rc["veil-checkpoint"])) if rc.get("veil-checkpoint") else None
    loop = FlowerServer(grid, cfg, float(rc.get("veil-timeout", 120.0)), ckpt, context)
    start = time.perf_counter()
    loop.run(resume=bool(rc.get("veil-resume", False)))
    out = Path(str(rc["veil-out"]))
    loop.write_result(out)
    export(loop, out, time.perf_counter() - start)


def export(loop: FlowerServer, result: Path, seconds: float) -> None:
    """Beside the result: the global model as a veil model file, and its ledger (with the
    training-data guarantee), for runs submitted with ``flwr run`` by hand."""
    from veil.collab.flower.launcher import outcome_from
    from veil.collab.runner import finish
    from veil.core.io import save_trained_files

    cfg = loop.cfg
    outcome = outcome_from(cfg, loop.params, loop._facts())
    done = finish(outcome, loop.prepared, seconds, None, "collab-train")
    prepared = Prepared(done.model, done.spec, done.train, done.test, {"seed": cfg.seed})
    save_trained_files(
        result.with_suffix(".veil"),
        result.with_suffix(".ledger.json"),
        prepared,
        done.record("collab-train"),
        f"{cfg.algo.upper()} on Flower",
        done.guarantee,
    )


class FlowerServer:
    """One run's server side: node discovery, setup, rounds, checkpoints, result."""

    def __init__(self, grid: Grid, cfg, timeout: float, checkpoint: Path | None, context=None):
        from veil.collab import dssgd
        from veil.collab.participant import flat
        from veil.collab.runner import prepared_for

        self.grid, self.cfg, self.timeout, self.checkpoint = grid, cfg, timeout, checkpoint
        self.context = context
        self.prepared = prepared_for(cfg)
        init = flat(self.prepared.model)
        self.size = init.size
        self.server = cfg.dssgd.server(init)
        self.global_params = init.copy()
        self.rng = np.random.default_rng(cfg.seed + 7919)
        self.noise_rng = np.random.default_rng(cfg.seed + 104729)
        self.eps_u = dssgd.upload_epsilon(cfg.dssgd, cfg.rounds) if cfg.dssgd.private else None
        self.round, self.history, self.dropped = 0, [], 0
        self.uploads = [0] * cfg.participants
        self.steps = [0] * cfg.participants
        self.sizes = [0] * cfg.participants
        self.accuracy = [0.0] * cfg.participants
        self.nodes: dict[int, int] = {}  # participant id -> Flower node id

    # --- messages -------------------------------------------------------------------------

    def _message(self, content: RecordDict, kind: str, pid: int) -> Message:
        return self.grid.create_message(content, kind, self.nodes[pid], str(self.round + 1))

    def exchange(self, messages: list[Message]) -> dict[str, Message | None]:
        """Push ``messages`` and wait for their replies (None for a node that did not answer)."""
        ids = list(self.grid.push_messages(messages))
        replies: dict[str, Message | None] = dict.fromkeys(ids)
        deadline = time.monotonic() + self.timeout
        waiting = set(ids)
        while waiting and time.monotonic() < deadline:
            for reply in self.grid.pull_messages(list(waiting)):
                replies[reply.metadata.reply_to_message_id] = reply
                waiting.discard(reply.metadata.reply_to_message_id)
            if waiting:
                time.sleep(POLL_SECONDS)
        return replies

    def _usable(self, reply: Message | None, pid: int) -> bool:
        if reply is None or reply.has_error():
            why = "no answer" if reply is None else reply.error.reason
            log.warning("participant %d dropped out of round %d: %s", pid, self.round + 1, why)
            self.dropped += 1
            return False
        return True

    # --- setup ----------------------------------------------------------------------------

    def discover(self) -> list[int]:
        deadline = time.monotonic() + max(self.timeout, 60.0)  # nodes may still be starting
        while time.monotonic() < deadline:
            ids = sorted(self.grid.get_node_ids())
            if len(ids) >= self.cfg.participants:
                return ids
            time.sleep(0.05)
        raise VeilError(f"only {len(ids)} of {self.cfg.participants} nodes connected in time")

    def setup(self) -> None:
        facts = {"config": json.dumps(self.cfg.to_dict())}
        if self.eps_u is not None:
            facts["eps_u"] = self.eps_u
        content = RecordDict({"meta": ConfigRecord(facts)})
        ids = self.discover()
        msgs = [self.grid.create_message(content, "query.setup", n, "setup") for n in ids]
        for msg, reply in zip(msgs, self.exchange(msgs).values(), strict=True):
            if reply is None or reply.has_error():
                raise VeilError(f"node {msg.metadata.dst_node_id} failed to set up")
            pid = int(reply.content["meta"]["pid"])
            self.nodes[pid] = msg.metadata.dst_node_id
            self.sizes[pid] = int(reply.content["meta"]["n_samples"])
        if sorted(self.nodes) != list(range(self.cfg.participants)):
            raise VeilError(f"nodes hold participants {sorted(self.nodes)}, expected 0..N-1")

    # --- rounds ---------------------------------------------------------------------------

    def deliver(self, reply: Message, pid: int) -> int:
        """Check and apply a DSSGD reply; its bytes (0 if refused)."""
        try:
            update, meta = read_update(reply.content, self.size)
            if update.participant != pid:
                raise UpdateRejected(f"update claims participant {update.participant}", "sender")
            self.server.apply(update)
        except UpdateRejected as e:
            log.warning("rejected: %s", e)
            return 0
        self.uploads[pid] += 1
        self.accuracy[pid] = float(meta.get("accuracy", 0.0))
        self.steps[pid] = int(meta.get("steps", 0))
        return update.nbytes(self.size)

    def dssgd_message(self, pid: int) -> Message:
        dl = self.server.download(self.cfg.dssgd.theta_down, self.cfg.dssgd.download)
        return self._message(
            download_content(dl.indices, dl.values, dl.version, self.round + 1),
            "train.dssgd",
            pid,
        )

    def dssgd_round(self) -> int:
        sent = 0
        for pid in dssgd.round_order(self.cfg.order, self.cfg.participants, self.rng):
            (reply,) = self.exchange([self.dssgd_message(pid)]).values()
            if self._usable(reply, pid):
                sent += self.deliver(reply, pid)
        return sent

    def async_rounds(self, on_round) -> None:
        """Every node works at its own pace; a round is N replies."""
        left = [self.cfg.rounds] * self.cfg.participants
        inflight: dict[str, int] = {}

        def launch(pid: int) -> None:
            left[pid] -= 1
            (mid,) = self.grid.push_messages([self.dssgd_message(pid)])
            inflight[mid] = pid

        for pid in range(self.cfg.participants):
            launch(pid)
        arrived, sent, t0 = 0, 0, time.perf_counter()
        deadline = time.monotonic() + self.timeout
        while inflight and time.monotonic() < deadline:
            replies = list(self.grid.pull_messages(list(inflight)))
            if not replies:
                time.sleep(POLL_SECONDS)
                continue
            deadline = time.monotonic() + self.timeout
            for reply in replies:
                pid = inflight.pop(reply.metadata.reply_to_message_id)
                if self._usable(reply, pid):
                    sent += self.deliver(reply, pid)
                arrived += 1
                if left[pid] > 0:
                    launch(pid)
                if arrived % self.cfg.participants == 0:
                    on_round(sent, time.perf_counter() - t0)
                    sent, t0 = 0, time.perf_counter()
        self.dropped += len(inflight)
        if arrived % self.cfg.participants:
            on_round(sent, time.perf_counter() - t0)

    def fedavg_round(self) -> int:
        from veil.collab import fedavg

        cfg = self.cfg.fedavg
        clients = fedavg.sample_clients(self.cfg.participants, cfg, self.rng)
        idx = np.arange(self.size, dtype=np.int64)
        content = download_content(idx, self.global_params, self.round, self.round + 1)
        msgs = [self._message(content, "train.fedavg", pid) for pid in clients]
        deltas, weights, sent = [], [], 0
        for pid, reply in zip(clients, self.exchange(msgs).values(), strict=True):
            if not self._usable(reply, pid):
                continue
            try:
                update, meta = read_update(reply.content, self.size)
            except UpdateRejected as e:
                log.warning("rejected: %s", e)
                continue
            if update.indices.size != self.size or not np.isfinite(update.values).all():
                log.warning("rejected: FedAvg update from %d is not a finite dense update", pid)
                continue
            deltas.append(update.values)
            weights.append(self.sizes[pid])
            self.uploads[pid] += 1
            self.steps[pid] = int(meta.get("steps", 0))
            sent += dense_bytes(self.size)
        self.global_params = fedavg.next_global(
            self.global_params, deltas, weights, self.cfg.participants, cfg, self.noise_rng
        )
        return sent

    def secure_fedavg(self) -> None:
        """FedAvg through Flower's SecAgg+ workflow (legacy strategy API): clients mask their
        quantized, sample-weighted models with pairwise and self masks whose seeds are
        Shamir-shared; the server unmasks only the sum. Every client takes part each round."""
        from flwr.common import ndarrays_to_parameters
        from flwr.server import LegacyContext, ServerConfig
        from flwr.server.strategy import FedAvg
        from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
        from flwr.superlink.grid import http_grid

        cap_sleeps(http_grid)  # the legacy workflow waits with send_and_receive (3 s polls)
        n, clock = self.cfg.participants, [time.perf_counter()]
        dense = dense_bytes(self.size)

        def evaluate_fn(server_round: int, ndarrays, config):
            if server_round == 0:
                return None
            self.global_params = np.asarray(ndarrays[0], np.float32)
            self.uploads = [u + 1 for u in self.uploads]
            self.end_round(n * dense, time.perf_counter() - clock[0])
            clock[0] = time.perf_counter()
            return 0.0, {"accuracy": self.history[-1]["global_accuracy"]}

        strategy = FedAvg(
            fraction_fit=1.0,
            fraction_evaluate=0.0,
            min_fit_clients=n,
            min_available_clients=n,
            initial_parameters=ndarrays_to_parameters([self.global_params]),
            evaluate_fn=evaluate_fn,
        )
        legacy = LegacyContext(self.context, ServerConfig(num_rounds=self.cfg.rounds), strategy)
        secagg = SecAggPlusWorkflow(
            num_shares=n, reconstruction_threshold=max(2, (2 * n) // 3), max_weight=max(self.sizes)
        )
        DefaultWorkflow(fit_workflow=secagg)(self.grid, legacy)

    def end_round(self, sent: int, seconds: float) -> None:
        from veil.collab.participant import set_flat
        from veil.core.train import evaluate

        self.round += 1
        set_flat(self.prepared.model, self.params)
        row = {
            "round": self.round,
            "global_accuracy": evaluate(self.prepared.model, self.prepared.test, device="cpu")[
                "accuracy"
            ],
            "bytes_up": sent,
            "rejected": sum(self.server.stats.rejected.values()),
            "dropped": self.dropped,
            "seconds": round(seconds, 3),
        }
        if self.cfg.algo == "dssgd":
            row["participant_accuracy"] = list(self.accuracy)
        self.history.append(row)
        log.info("round %d: accuracy %.4f", self.round, row["global_accuracy"])
        if self.checkpoint is not None:
            self.save(self.checkpoint)

    def run(self, resume: bool = False) -> None:
        if resume and self.checkpoint is not None and self.checkpoint.exists():
            self.load(self.checkpoint)
        self.setup()
        if self.cfg.algo == "fedavg" and self.cfg.fedavg.secure:
            self.secure_fedavg()
            return
        if self.cfg.algo == "dssgd" and self.cfg.order == "async":
            self.async_rounds(self.end_round)
            return
        one_round = self.fedavg_round if self.cfg.algo == "fedavg" else self.dssgd_round
        while self.round < self.cfg.rounds:
            t0 = time.perf_counter()
            sent = one_round()
            self.end_round(sent, time.perf_counter() - t0)

    # --- files ----------------------------------------------------------------------------

    def _facts(self) -> dict:
        return {
            "round": self.round,
            "history": self.history,
            "uploads": self.uploads,
            "steps": self.steps,
            "sizes": self.sizes,
            "dropped": self.dropped,
            "rejected": dict(self.server.stats.rejected),
            "eps_u": self.eps_u,
        }

    def save(self, path: Path) -> None:
        from veil.core.io import save_arrays

        arrays, meta = self.server.state(prefix="server.")
        arrays["global"] = self.global_params
        save_arrays(path, arrays, self._facts() | {"server": meta}, CHECKPOINT_FORMAT)

    def load(self, path: Path) -> None:
        from veil.collab.server import ParameterServer
        from veil.core.io import load_arrays

        arrays, meta = load_arrays(path, CHECKPOINT_FORMAT)
        self.server = ParameterServer.from_state(arrays, meta["server"], prefix="server.")
        self.global_params = arrays["global"].copy()
        self.round, self.history, self.dropped = meta["round"], meta["history"], meta["dropped"]
        self.uploads, self.steps = meta["uploads"], meta["steps"]

    @property
    def params(self) -> np.ndarray:
        """The global parameters: the parameter server's (DSSGD) or FedAvg's."""
        return self.server.params if self.cfg.algo == "dssgd" else self.global_params

    def write_result(self, path: Path) -> None:
        from veil.core.io import save_arrays

        arrays = {"params": np.asarray(self.params, np.float32)}
        save_arrays(path, arrays, self._facts(), RESULT_FORMAT)
