"""STRIP (Gao et al. 2019): a run-time detector of triggered inputs.

Superimpose the input on ``copies`` random clean images; a clean input's predictions then
scatter across classes, a triggered one's stay on the target (the trigger survives the
blend). The score of an input is the entropy over classes of each blended copy's prediction,
averaged over the copies (the paper's definition; taking the entropy across copies instead,
as ART's implementation does, measures something else). Inputs scoring below a threshold set
on clean inputs at a chosen false-rejection rate are flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from veil.core.data import ArrayDataset
from veil.core.errors import ConfigError


def mean_entropy(probs: torch.Tensor) -> torch.Tensor:
    """For ``probs`` (inputs, copies, classes): each copy's entropy over classes, averaged
    over the copies. Entropy in nats."""
    if probs.ndim != 3:
        raise ConfigError("probs must be (inputs, copies, classes)")
    h = -(probs * torch.log(probs.clamp_min(1e-12))).sum(dim=2)
    return h.mean(dim=1)


@torch.no_grad()
def entropies(
    model: nn.Module, inputs: torch.Tensor, pool: ArrayDataset, copies: int = 32, seed: int = 0
) -> torch.Tensor:
    """STRIP score of each of ``inputs``: blended (x + clean, clipped to [0, 1]) ``copies``
    times with random images of ``pool``."""
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    out = []
    for x in inputs:
        idx = torch.randint(len(pool), (copies,), generator=gen)
        blend = (x.unsqueeze(0) + pool.batch(idx)[0]).clamp(0, 1)
        out.append(torch.softmax(model(blend), dim=1))
    return mean_entropy(torch.stack(out))


@dataclass
class StripResult:
    """Threshold from clean inputs, and which of the tested inputs are flagged."""

    threshold: float
    false_rejection: float  # measured on the clean calibration inputs
    flagged: torch.Tensor  # bool per tested input
    clean_scores: torch.Tensor
    scores: torch.Tensor

    @property
    def detection_rate(self) -> float:
        return float(self.flagged.float().mean()) if len(self.flagged) else 0.0


def strip(
    model: nn.Module,
    suspicious: torch.Tensor,
    clean: torch.Tensor,
    pool: ArrayDataset,
    frr: float = 0.01,
    copies: int = 32,
    seed: int = 0,
) -> StripResult:
    """Flag ``suspicious`` inputs whose STRIP score is below the ``frr`` quantile of the
    scores of ``clean`` inputs (defender-held, never trained on)."""
    if not 0 < frr < 0.5:
        raise ConfigError(f"false-rejection rate must be in (0, 0.5), got {frr}")
    clean_scores = entropies(model, clean, pool, copies, seed)
    threshold = float(torch.quantile(clean_scores, frr))
    scores = entropies(model, suspicious, pool, copies, seed + 1)
    return StripResult(
        threshold,
        float((clean_scores < threshold).float().mean()),
        scores < threshold,
        clean_scores,
        scores,
    )


def load_inputs(path, shape: tuple[int, ...]) -> torch.Tensor:
    """Images to check, from an ``.npz`` file (array ``x``, else its only array): uint8
    (served /255) or floats in [0, 1], shaped (N, *shape) or (N, H, W) for one channel.
    Nothing is unpickled; anything else is refused with the reason."""
    import zipfile

    import numpy as np

    from veil.core.errors import DataError

    try:
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.files)
            key = "x" if "x" in names else (names[0] if len(names) == 1 else None)
            if key is None:
                raise DataError(f"{path}: put the images in an array named 'x'")
            arr = npz[key]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise DataError(f"{path} is not a readable .npz of images: {e}") from e
    if arr.ndim == len(shape) and shape[0] == 1:
        arr = arr[:, None]
    if arr.ndim != len(shape) + 1 or tuple(arr.shape[1:]) != tuple(shape) or len(arr) == 0:
        raise DataError(f"{path}: expected images of shape (N, {', '.join(map(str, shape))})")
    if arr.dtype == np.uint8:
        return torch.from_numpy(arr.astype(np.float32) / 255.0)
    if arr.dtype.kind != "f" or not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
        raise DataError(f"{path}: images must be uint8, or finite floats in [0, 1]")
    return torch.from_numpy(arr.astype(np.float32))


BINS = 20  # entropy histogram bins in the ledger (the report draws them)


def guarantee(found: StripResult, frr: float, copies: int, step: str = "strip"):
    """The ledger entry of a STRIP check: how many inputs look triggered, and the entropy
    histograms of the clean and the tested inputs (drawn in the report). Counted as
    evidence of a backdoor (``violated``) when at least half of the inputs are flagged."""
    from veil.core.guarantees import Guarantee

    both = torch.cat([found.clean_scores, found.scores])
    edges = torch.linspace(float(both.min()), float(both.max()) + 1e-9, BINS + 1)
    hist = {
        "edges": [round(float(e), 5) for e in edges],
        "clean": torch.histogram(found.clean_scores.float(), edges).hist.int().tolist(),
        "tested": torch.histogram(found.scores.float(), edges).hist.int().tolist(),
        "threshold": round(found.threshold, 5),
    }
    flagged, n = int(found.flagged.sum()), len(found.flagged)
    return Guarantee(
        guarantee="audit",
        tests="model",
        mechanism="STRIP",
        claim=f"{flagged} of {n} inputs look triggered (mean entropy below {found.threshold:.3f}, "
        f"the {frr:.0%} quantile of clean inputs)",
        threat_model="an attacker whose trigger keeps its label when the input is blended with "
        "clean images; triggers that depend on the input or blend away (c-BaN) evade it",
        parameters={"copies": copies, "false_rejection_target": frr},
        numbers={
            "inputs": n,
            "flagged": flagged,
            "detection_rate": found.detection_rate,
            "threshold": found.threshold,
            "false_rejection_on_clean": found.false_rejection,
        },  # fmt: skip
        evidence={"entropy_histogram": hist},
        status="violated" if n and flagged * 2 >= n else "supported",
        step=step,
    )
