"""Start the three ranks of a private inference as processes on 127.0.0.1, stop them by PID."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from veil.core.net import free_port
from veil.encrypted.mpc.ring import MPCError


def run_processes(
    model: Path,
    data: str,
    limit: int,
    repeat: int = 1,
    timeout_s: float = 600.0,
    labels_only: bool = False,
) -> dict:
    """``veil mpc party`` for ranks 0 (model), 1 (input, result) and 2 (dealer); rank 1's
    result. With ``repeat`` > 1, ``seconds`` is the median of the runs after the first."""
    master = f"127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory(prefix="veil-mpc-") as tmp:
        result = Path(tmp) / "rank1.json"
        base = [sys.executable, "-m", "veil.cli.main", "-q", "mpc", "party", "--master", master]
        base += ["--repeat", str(repeat)] + (["--labels-only"] if labels_only else [])
        commands = [
            [*base, "--rank", "0", "--model", str(model)],
            [*base, "--rank", "1", "--data", data, "--limit", str(limit), "--result", str(result)],
            [*base, "--rank", "2"],
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        procs = [
            subprocess.Popen(c, stderr=subprocess.PIPE, start_new_session=True, env=env)
            for c in commands
        ]
        start = time.perf_counter()
        try:
            for p in procs:
                p.wait(timeout=max(1.0, timeout_s - (time.perf_counter() - start)))
        except subprocess.TimeoutExpired as e:
            raise MPCError(f"private inference did not finish in {timeout_s:.0f} s") from e
        finally:
            for p in procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
        failed = [(i, p) for i, p in enumerate(procs) if p.returncode != 0]
        if failed:
            i, p = failed[0]
            err = p.stderr.read().decode(errors="replace").strip().splitlines()
            raise MPCError(f"rank {i} failed: {err[-1] if err else p.returncode}")
        for p in procs:
            p.stderr.close()
        return json.loads(result.read_text())
