"""Start the three ranks of a private computation as processes on 127.0.0.1, stop them by PID."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from veil.core.net import listening, stop_groups
from veil.encrypted.mpc.ring import MPCError


def run_ranks(commands: Callable[[str], list[list[str]]], what: str, timeout_s: float) -> None:
    """Run one ``veil mpc`` command per rank, ``commands(master)`` (rank 0's first) for a
    port on 127.0.0.1; wait for all, and raise with the first failed rank's last error line.

    The port is bound here and rank 0 is handed the listening socket (``--master-fd``), so
    it is held from the moment it is chosen: no other process can take it before rank 0
    listens (a port picked free, released and bound by rank 0 later could be, and then the
    ranks failed with EADDRINUSE or met a stranger). As soon as one rank fails the others
    are stopped: a rank whose partner died waits for it, which held a run until
    ``timeout_s``."""
    with listening("127.0.0.1", 0) as sock:
        argv = commands(f"127.0.0.1:{sock.getsockname()[1]}")
        argv[0] = [*argv[0], "--master-fd", str(sock.fileno())]
        _run_once(argv, what, timeout_s, sock)


def _run_once(commands: list[list[str]], what: str, timeout_s: float, sock) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "veil.cli.main", "-q", "mpc"]
    with contextlib.ExitStack() as stack:
        # files, not pipes: nobody reads them while the ranks run, and a rank that filled a
        # pipe (64 KiB) would block on it
        logs = [stack.enter_context(tempfile.TemporaryFile()) for _ in commands]
        procs: list[subprocess.Popen] = []
        stack.callback(stop_groups, procs)  # also those started if a later one cannot be
        for r, (c, log) in enumerate(zip(commands, logs, strict=True)):
            procs.append(
                subprocess.Popen(
                    [*base, *c],
                    stderr=log,
                    start_new_session=True,
                    env=env,
                    pass_fds=() if r else (sock.fileno(),),  # rank 0 listens on the socket
                )
            )
        sock.close()  # rank 0 holds it now
        failed = _wait_all(procs, what, timeout_s)
        if failed is not None:
            logs[failed].seek(0)
            err = logs[failed].read().decode(errors="replace").strip().splitlines()
            raise MPCError(f"rank {failed} failed: {err[-1] if err else procs[failed].returncode}")


def _wait_all(procs: list[subprocess.Popen], what: str, timeout_s: float) -> int | None:
    """Wait until every rank has ended well (None) or one has failed (its index)."""
    deadline = time.perf_counter() + timeout_s
    while True:
        codes = [p.poll() for p in procs]
        failed = next((i for i, c in enumerate(codes) if c not in (None, 0)), None)
        if failed is not None or all(c == 0 for c in codes):
            return failed
        if time.perf_counter() > deadline:
            raise MPCError(f"{what} did not finish in {timeout_s:.0f} s")
        time.sleep(0.05)


def run_processes(
    model: Path,
    data: str,
    limit: int,
    repeat: int = 1,
    timeout_s: float = 600.0,
    labels_only: bool = False,
    parties: int = 2,
    compare_bits: int | str = "auto",
    input_range: str = "0,1",
    client_dealer: bool = False,
) -> dict:
    """``veil mpc party`` for ranks 0 (model), 1 (input, result), 2 (with three parties) and
    the dealer; rank 1's result. With ``repeat`` > 1, ``seconds`` is the median of the runs
    after the first. ``client_dealer``: rank 1 runs the dealer itself (``--serve-dealer``)."""
    rank1 = ["--data", data, "--limit", str(limit)] + (["--serve-dealer"] if client_dealer else [])
    options = ["--compare-bits", str(compare_bits), "--input-range", input_range]
    return _inference(["--model", str(model)], rank1, repeat, timeout_s, labels_only, parties,
                      options, dealer=not client_dealer)  # fmt: skip


def shared_weights_processes(
    files: list[Path], data: str, limit: int, timeout_s: float = 600.0, labels_only=False
) -> dict:
    """Inference with a model nobody holds whole: rank R brings weight-share file R (from
    training with ``--keep-shared``), rank 1 also the images; rank 1's result."""
    ranks = [["--weight-shares", str(f)] for f in files]
    ranks[1] += ["--data", data, "--limit", str(limit)]
    return _inference(ranks[0], ranks[1], 1, timeout_s, labels_only, len(files),
                      extra=ranks[2:])  # fmt: skip


def image_processes(
    model: Path,
    shares: list[Path],
    key: Path | None = None,
    bits: int = 1,
    timeout_s: float = 600.0,
    labels_only: bool = False,
) -> dict:
    """Private inference on an image shared k-of-n: rank 0 (the model) holds the first of
    the k ``shares``, rank 1 the others; rank 1's result."""
    from veil.imaging.images import read_share
    from veil.imaging.stego import read_key

    held = [read_share(p, read_key(key), bits) for p in shares]
    k = held[0].k
    if len(shares) < k:
        raise MPCError(f"{len(shares)} shares given; the image needs {k}")
    common = ["--holders", ",".join(str(s.index) for s in held[:k]), "--bits", str(bits)]
    common += ["--key", str(key)] if key else []
    rank0 = ["--model", str(model), *common, "--image-share", str(shares[0])]
    rank1 = [*common, *[a for p in shares[1:k] for a in ("--image-share", str(p))]]
    return _inference(rank0, rank1, 1, timeout_s, labels_only)


def _inference(rank0: list, rank1: list, repeat, timeout_s, labels_only, parties=2,
               options=(), extra=(), dealer=True):  # fmt: skip
    """Ranks 0 and 1 with their arguments (and ``extra`` ones for rank 2 of three), the
    others bare, the dealer last (unless a rank starts it); rank 1's result."""
    with tempfile.TemporaryDirectory(prefix="veil-mpc-") as tmp:
        result = Path(tmp) / "rank1.json"
        given = [rank0, [*rank1, "--result", str(result)], *extra]

        def commands(master: str) -> list[list[str]]:
            base = ["party", "--master", master, "--repeat", str(repeat), "--parties",
                    str(parties), *options]  # fmt: skip
            base += ["--labels-only"] if labels_only else []
            return [
                [*base, "--rank", str(r), *(given[r] if r < len(given) else [])]
                for r in range(parties + (1 if dealer else 0))  # and the dealer
            ]

        run_ranks(commands, "private inference", timeout_s)
        return json.loads(result.read_text())


def train_processes(
    initial: Path,
    data: str,
    limit: int | None,
    schedule,
    out: Path,
    parties: int = 2,
    timeout_s: float = 3600.0,
) -> dict:
    """``veil mpc train-party`` for ranks 0 (initial model, its records, the trained model
    written to ``out``), 1 (and 2: their records) and the dealer; rank 0's result."""
    with tempfile.TemporaryDirectory(prefix="veil-mpc-") as tmp:
        result = Path(tmp) / "rank0.json"

        def commands(master: str) -> list[list[str]]:
            base = ["train-party", "--master", master, "--data", data, "--steps",
                    str(schedule.steps), "--batch", str(schedule.batch), "--lr",
                    str(schedule.lr), "--seed", str(schedule.seed), "--parties",
                    str(parties)]  # fmt: skip
            base += ["--limit", str(limit)] if limit else []
            rank0 = ["--rank", "0", "--model", str(initial), "--out", str(out), "--result",
                     str(result)]  # fmt: skip
            others = [[*base, "--rank", str(r)] for r in range(1, parties + 1)]  # and the dealer
            return [[*base, *rank0], *others]

        run_ranks(commands, "secure training", timeout_s)
        return json.loads(result.read_text())
