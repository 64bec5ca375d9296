"""Errors a user can act on: every failure on bad input raises a VeilError subclass.

The CLI prints ``error: <message>`` on one line and exits with code 2; ``--debug`` shows the
traceback. Messages say what is wrong and what to do about it.
"""


class VeilError(Exception):
    """Base of every error veil raises on purpose."""


class DataError(VeilError):
    """A data set is missing, malformed, or in a format veil refuses to read."""


class ModelError(VeilError):
    """A model name, shape or configuration that cannot be built."""


class ModelFileError(VeilError):
    """A model file that is not a veil model file, or is damaged."""


class LedgerError(VeilError):
    """A ledger that cannot be written or read back."""


class ScenarioError(VeilError):
    """A scenario file with an unknown key, a bad value, or a broken step graph."""


class ConfigError(VeilError):
    """A parameter value outside what the operation accepts."""


def refuse_overwrite(path, force: bool) -> None:
    """Raise unless ``path`` is free or the caller said ``force``: never overwrite silently."""
    from pathlib import Path

    if Path(path).exists() and not force:
        raise VeilError(f"{path} exists; pass --force to overwrite it, or choose another path")
