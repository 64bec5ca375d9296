"""Start a SuperLink and N veil nodes on 127.0.0.1, run one veil app, stop them by PID.

Everything runs from this Python environment: nothing is installed at run time
(``FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1``; the app's ``pyproject.toml`` lists no
dependencies, so torch is never fetched), telemetry is off, and Flower's home (its
SuperLink connection file and installed apps) is a temporary folder. Each process logs to
its own file there; on failure the tail of each log is shown.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

from veil.core.errors import VeilError
from veil.core.net import free_port, stop_groups

NODE = [sys.executable, "-m", "veil.collab.flower.node"]
# Flower 1.42's SuperLink and SuperNode serve with uvicorn, which logs the first line once it
# listens on the port it was given, and the second when another process holds that port.
LISTENING = "Uvicorn running on http://127.0.0.1:{port} "
TAKEN = "address already in use"
PORT_TRIES = 5
APP_FILES = {
    "veil_app/__init__.py": '"""veil collaborative training as a Flower app."""\n',
    "veil_app/server.py": "from veil.collab.flower import server_app\n\napp = server_app.app\n",
    "veil_app/client.py": "from veil.collab.flower import client_app\n\napp = client_app.app\n",
}
PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "veil-collab"
version = "1.0.0"
description = "veil: DSSGD and FedAvg"
license = "Apache-2.0"
# No dependencies on purpose: veil, torch and the data come from each node's environment.
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "veil"

[tool.flwr.app.components]
serverapp = "veil_app.server:app"
clientapp = "veil_app.client:app"

[tool.flwr.app.config]
"""


def write_app(folder: Path, config: dict) -> Path:
    """The Flower app folder: two one-line modules and a pyproject with the run config."""
    for name, text in APP_FILES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    lines = [f"{key} = {json.dumps(value)}" for key, value in config.items()]
    (folder / "pyproject.toml").write_text(PYPROJECT + "\n".join(lines) + "\n")
    return folder


def supernode_command(
    superlink: str,
    pid: int,
    n: int,
    port: int,
    root_certificates: str | None = None,
    auth_keys: tuple[str, str] | None = None,
) -> list[str]:
    """Flower's SuperNode of one veil node (process isolation, short polls), connected to
    ``superlink``, serving its Runtime API on ``port``. ``auth_keys`` (private, public key
    files) make it authenticate itself to a SuperLink started with ``--enable-supernode-auth``."""
    tls = ["--root-certificates", root_certificates] if root_certificates else ["--insecure"]
    if auth_keys:
        tls += ["--auth-supernode-private-key", auth_keys[0]]
        tls += ["--auth-supernode-public-key", auth_keys[1]]
    return [
        *NODE,
        "supernode",
        *tls,
        "--superlink",
        superlink,
        "--isolation",
        "process",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--node-config",
        f"partition-id={pid} num-partitions={n}",
    ]


def runner_command(port: int) -> list[str]:
    """veil's task runner of one node, taking its SuperNode's tasks on the Runtime API at
    ``port``: start it only once that SuperNode listens (:meth:`Processes.start_listening`),
    so that it never talks to another process that holds the port."""
    return [*NODE, "serve", "--runtime-api-address", f"127.0.0.1:{port}"]


def flower_env(home: Path) -> dict[str, str]:
    """Environment of every Flower process veil starts: no telemetry, nothing installed at
    run time, short task polls, this Python's scripts first on PATH, Flower's home in
    ``home``."""
    return os.environ | {
        "FLWR_HOME": str(home),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": os.environ.get("VEIL_FLOWER_POLL", "0.05"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
    }


def app_config(cfg, result: Path, checkpoint=None, resume=False, timeout=120.0) -> dict:
    """The Flower run config that carries a veil run: its settings and where to write."""
    return {
        "veil-config": json.dumps(cfg.to_dict()),
        "veil-out": str(result),
        "veil-checkpoint": str(Path(checkpoint).resolve()) if checkpoint else "",
        "veil-resume": bool(resume),
        "veil-timeout": float(timeout),
    }


class Processes:
    """Processes started here, each in its own process group, logging to ``work/logs``."""

    def __init__(self, work: Path):
        self.work = work
        self.named: dict[str, subprocess.Popen] = {}  # the latest start of each
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = flower_env(work / "flwr-home")

    def _start(self, name: str, argv: list[str], mode: str = "wb") -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", mode)  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(
            argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        proc.log_file = log
        proc.log_from = log.tell()  # this start's lines: a restart appends to the same log
        self.named[name] = proc
        return proc

    @property
    def procs(self) -> list[subprocess.Popen]:
        """The processes started here (a restarted one: its latest start)."""
        return list(self.named.values())

    def _log_of(self, name: str) -> str:
        with open(self.logs / f"{name}.log", "rb") as f:
            f.seek(self.named[name].log_from)
            return f.read().decode(errors="replace")

    def start_listening(self, commands: dict, port: int = 0, wait_s: float = 120.0) -> dict:
        """Start ``commands`` (name: a function of the port to listen on, giving the argv)
        side by side and return each one's port once it listens. Flower binds its ports
        itself, so a port is picked here, released, and bound there: another process may
        take it in between. A command whose picked port was taken starts again on a fresh
        one (up to ``PORT_TRIES`` times, each start appended to its log); with ``port``
        (not 0) every command gets that port, and its being taken is an error."""
        ports = {name: port or free_port() for name in commands}
        tries = dict.fromkeys(commands, 1)
        waiting = {name: self._start(name, argv(ports[name])) for name, argv in commands.items()}
        deadline = time.monotonic() + wait_s
        while waiting:
            for name, proc in list(waiting.items()):
                log = self._log_of(name)
                if LISTENING.format(port=ports[name]) in log:
                    del waiting[name]
                elif proc.poll() is not None:
                    taken = TAKEN in log
                    if port or not taken or tries[name] == PORT_TRIES:
                        why = f": port {ports[name]} is in use" if taken else ""
                        raise VeilError(f"{name} did not start (code {proc.returncode}){why}:\n"
                                        f"{self.tails()}")  # fmt: skip
                    stop_groups([proc])  # what it started too
                    proc.log_file.close()
                    ports[name], tries[name] = free_port(), tries[name] + 1
                    waiting[name] = self._start(name, commands[name](ports[name]), "ab")
            if waiting and time.monotonic() > deadline:
                raise VeilError(f"{', '.join(waiting)} did not listen within {wait_s:.0f} s:\n"
                                f"{self.tails()}")  # fmt: skip
            time.sleep(0.05)
        return ports

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise VeilError(
                    f"a Flower process exited early (code {proc.returncode}):\n{self.tails()}"
                )

    def tails(self, lines: int = 15) -> str:
        out = []
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace").strip().splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(out)

    def stop(self) -> None:
        """Stop every process started here, by PID (its whole process group)."""
        stop_groups(self.procs, grace_s=5)
        for proc in self.procs:
            proc.log_file.close()


def run_node(
    superlink: str, pid: int, n: int, port: int, root_certificates, work: Path, auth_keys=None
) -> None:
    """Run one participant's node until interrupted or until one of its processes exits."""
    procs = Processes(work)

    def stop_on_term(signum, frame):
        raise SystemExit(0)  # run the finally below: the node's processes go with it

    signal.signal(signal.SIGTERM, stop_on_term)
    try:
        command = partial(supernode_command, superlink, pid, n, root_certificates=root_certificates,
                          auth_keys=auth_keys)  # fmt: skip
        listening = procs.start_listening({"supernode": command}, port=port)
        procs._start("node", runner_command(listening["supernode"]))
        while True:
            procs.check_alive()
            time.sleep(0.5)
    finally:
        procs.stop()


class Cluster(Processes):
    """A SuperLink and ``n`` nodes (SuperNode + veil task runner) on this machine."""

    def __init__(self, n: int, work: Path):
        super().__init__(work)
        self.n = n
        self.port = None  # Flower 1.42 serves Runtime, Control and Fleet APIs on one port

    def start(self) -> None:
        """The SuperLink, then the SuperNodes once it listens (they are given its port),
        then each task runner once its SuperNode listens."""
        superlink = [str(Path(sys.executable).parent / "flower-superlink"), "--insecure", "--host",
                     "127.0.0.1", "--disable-runtime-dependency-installation"]  # fmt: skip
        link = self.start_listening({"superlink": lambda p: [*superlink, "--port", str(p)]})
        self.port = link["superlink"]
        home = self.work / "flwr-home"
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(
            '[superlink]\ndefault = "veil"\n\n[superlink.veil]\n'
            f'address = "127.0.0.1:{self.port}"\ninsecure = true\n'
        )
        address = f"127.0.0.1:{self.port}"
        nodes = {
            f"supernode-{i}": partial(supernode_command, address, i, self.n) for i in range(self.n)
        }
        for name, port in self.start_listening(nodes).items():
            self._start(name.replace("supernode", "node"), runner_command(port))

    def submit(self, app: Path) -> None:
        """``flwr run`` the app on this cluster's SuperLink (retried while it settles; the
        cluster's processes are checked before each try)."""
        flwr = str(Path(sys.executable).parent / "flwr")
        for _ in range(60):
            self.check_alive()
            proc = subprocess.run(
                [flwr, "run", str(app), "veil"], env=self.env, capture_output=True, text=True
            )
            if proc.returncode == 0:
                return
            time.sleep(0.5)
        raise VeilError(f"flwr run failed: {(proc.stdout + proc.stderr).strip()[-800:]}")


def run(
    cfg,
    *,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    on_round=None,
    ledger=None,
    step: str = "",
    quiet: bool | None = None,
    timeout: float = 120.0,
    keep: str | Path | None = None,
):
    """Run ``cfg`` on a local Flower cluster; the same :class:`CollabResult` as in-process.

    ``keep``: a folder to keep the Flower logs and app in (default: a temporary one).
    """
    from veil.collab.runner import finish, prepared_for
    from veil.core.progress import progress

    if cfg.drop_rate:
        raise VeilError("drop_rate simulates dropouts in-process; on Flower, nodes drop for real")
    with contextlib.ExitStack() as stack:
        work = Path(keep) if keep else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        work.mkdir(parents=True, exist_ok=True)
        result = work / "result.safetensors"
        result.unlink(missing_ok=True)
        app = write_app(work / "app", app_config(cfg, result, checkpoint, resume, timeout))
        cluster = Cluster(cfg.participants, work)
        stack.callback(cluster.stop)
        start = time.perf_counter()
        cluster.start()
        cluster.submit(app)
        with progress(f"{cfg.algo} on Flower, {cfg.participants} nodes", None, quiet):
            while not result.exists():
                cluster.check_alive()
                if time.perf_counter() - start > timeout * (cfg.rounds + 2):
                    raise VeilError(f"the Flower run did not finish in time:\n{cluster.tails()}")
                time.sleep(0.1)
        outcome = read_result(cfg, result)
        seconds = time.perf_counter() - start
    if on_round is not None:
        for row in outcome.history:
            on_round(row)
    return finish(outcome, prepared_for(cfg), seconds, ledger, step)


def read_result(cfg, path: Path):
    """The :class:`~veil.collab.runner.Outcome` in a result file the ServerApp wrote."""
    from veil.collab.flower.server_app import RESULT_FORMAT
    from veil.core.io import load_arrays

    arrays, facts = load_arrays(path, RESULT_FORMAT)
    return outcome_from(cfg, arrays["params"], facts)


def outcome_from(cfg, params, facts: dict):
    """A Flower run's :class:`~veil.collab.runner.Outcome` from its server's facts."""
    from veil.collab.participant import record_level
    from veil.collab.runner import Outcome

    record = record_level(cfg.local, facts["steps"], facts["sizes"]) if cfg.local.dp_sigma else None
    return Outcome(
        cfg,
        params,
        facts["history"],
        facts["uploads"],
        facts["rejected"],
        facts["dropped"],
        facts["eps_u"],
        record,
        engine="flower",
    )
