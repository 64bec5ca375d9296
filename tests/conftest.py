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
