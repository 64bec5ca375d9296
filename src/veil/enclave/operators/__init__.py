"""Operator code shipped with veil, for demos and scenarios (an operator would bring its own)."""

from pathlib import Path


def source(name: str) -> str:
    """The text of a bundled operator file (``mlp``)."""
    return (Path(__file__).parent / f"{name}.py").read_text()
