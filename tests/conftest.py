"""Shared fixtures: the shared data folder (required in CI), a tiny scenario, temp roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()

if "VEIL_DATA" not in os.environ and SHARED_DATA.is_dir():
    os.environ["VEIL_DATA"] = str(SHARED_DATA)
os.environ.setdefault("VEIL_QUIET", "1")
# One torch thread per process: `make test` runs 2 workers on 2 cores, and commands the tests
# start run beside them. With torch's default (a thread per core in every process) the
# threads oversubscribe the cores and spin against each other: `veil run` beside the suite
# took 180-197 s where it takes 18 s alone, and with one thread each 18-21 s (measured
# 2026-12-07); the default-run test's 300 s limit was being reached. Set before torch loads,
# and inherited by every command a test starts.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def shared_data() -> Path:
    """The shared data folder; in CI its absence is a failure, elsewhere a skip."""
    root = Path(os.environ.get("VEIL_DATA", SHARED_DATA))
    if not (root / "mnist.npz").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"shared data missing at {root}: CI must have it")
        pytest.skip(f"shared data not at {root}")
    return root


@pytest.fixture
def empty_root(tmp_path, monkeypatch) -> Path:
    """An empty data folder, set as VEIL_DATA."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("VEIL_DATA", str(root))
    return root
