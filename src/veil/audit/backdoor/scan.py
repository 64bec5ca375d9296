"""Scan a model for a backdoor: Neural Cleanse and/or ABS-lite with clean data, and STRIP
on inputs to check, as ledger entries (``veil audit backdoor scan`` / ``strip`` and the
``audit-backdoor`` scenario step)."""

from __future__ import annotations

from torch import nn

from veil.core.data import ArrayDataset
from veil.core.errors import ConfigError

SCANS = ("strip", "nc", "abs")
STRIP_CALIBRATION = 500  # clean test inputs that set STRIP's threshold


def defenses_from(text: str) -> list[str]:
    """``"strip,nc,abs"`` as a checked list of scans."""
    chosen = [d.strip() for d in text.split(",") if d.strip()]
    if not chosen or set(chosen) - set(SCANS):
        raise ConfigError(f"defenses are strip, nc and/or abs, got {text!r}")
    return chosen


def strip_check(model: nn.Module, inputs, clean_set: ArrayDataset, frr: float = 0.01,
                copies: int = 32, step: str = "strip"):  # fmt: skip
    """STRIP on ``inputs`` (a tensor of images), its threshold set on up to 500 clean test
    inputs at false-rejection rate ``frr``: the result and its ledger entry."""
    import torch

    from veil.audit.backdoor.strip import guarantee, strip
    from veil.core.data import sample_indices

    picked = sample_indices(len(clean_set), min(STRIP_CALIBRATION, len(clean_set)), 0)
    clean = clean_set.batch(torch.as_tensor(picked))[0]
    found = strip(model, inputs, clean, clean_set, frr=frr, copies=copies)
    return found, guarantee(found, frr, copies, step)


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
