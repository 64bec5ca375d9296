"""Scan a model for a backdoor with clean data: Neural Cleanse and/or ABS-lite, as ledger
entries (``veil audit backdoor scan`` and the ``audit-backdoor`` scenario step)."""

from __future__ import annotations

from torch import nn

from veil.core.data import ArrayDataset
from veil.core.errors import ConfigError

SCANS = ("nc", "abs")


def defenses_from(text: str) -> list[str]:
    """``"nc,abs"`` as a checked list of scans."""
    chosen = [d.strip() for d in text.split(",") if d.strip()]
    if not chosen or set(chosen) - set(SCANS):
        raise ConfigError(f"defenses are nc and/or abs, got {text!r}")
    return chosen


def scan_model(
    model: nn.Module,
    clean: ArrayDataset,
    defenses: list[str],
    steps: int = 300,
    bound: float = 0.06,
    step: str = "backdoor-scan",
) -> list:
    """One audit entry per scan in ``defenses`` (``nc``, ``abs``) of ``model``."""
    from veil.audit.backdoor.abs_scan import AbsConfig, abs_scan
    from veil.audit.backdoor.abs_scan import guarantee as abs_entry
    from veil.audit.backdoor.neural_cleanse import CleanseConfig, neural_cleanse
    from veil.audit.backdoor.neural_cleanse import guarantee as nc_entry

    entries = []
    if "nc" in defenses:
        entries.append(nc_entry(neural_cleanse(model, clean, CleanseConfig(steps=steps)), step))
    if "abs" in defenses:
        found = abs_scan(model, clean, AbsConfig(steps=steps, bound=bound))
        entries.append(abs_entry(found, step))
    return entries
