"""The ``share-images`` step: share a medical image k-of-n, each share hidden in a cover.

The image is a DICOM, PNG or TIFF file, or ``pydicom:NAME`` for a test file that ships
inside pydicom (the default, ``CT_small.dcm``: a 128x128 16-bit CT slice; nothing is
downloaded). Covers come from a folder of lossless images, or (``covers = "sample"``) from
the two photographs bundled with scikit-learn, flipped to give up to eight distinct
covers. The stego key goes to ``<out>/keys/<id>.stego`` (mode 0600), never beside the shares.

Before claiming anything the step checks it: k shares read back from the stego images
rebuild the pixels exactly, k-1 are refused, and a share with one changed byte is named and
left out when more than k are given.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from veil.pipeline.scenario import StepConfig
from veil.pipeline.steps import Artifact, RunContext, register_step

PYDICOM_PREFIX = "pydicom:"


class ShareImagesConfig(StepConfig):
    """Threshold sharing of one image, hidden in cover images (veil.imaging)."""

    kind: Literal["share-images"]
    image: str = "pydicom:CT_small.dcm"
    k: int = Field(3, ge=2, le=255)
    n: int = Field(5, ge=2, le=255)
    covers: str = "sample"
    bits: Literal[1, 2] = 1
    keep_identifying: bool = False


def image_path(name: str) -> Path:
    """The file ``name`` names: a path, or ``pydicom:FILE`` (a test file inside pydicom)."""
    from veil.core.errors import ScenarioError

    if name.startswith(PYDICOM_PREFIX):
        from pydicom.data import get_testdata_file

        found = get_testdata_file(name.removeprefix(PYDICOM_PREFIX), download=False)
        if found is None:
            raise ScenarioError(f"{name}: no such test file bundled with pydicom")
        return Path(found)
    if not Path(name).is_file():
        raise ScenarioError(f"image {name} not found")
    return Path(name)


def sample_covers(n: int) -> list[np.ndarray]:
    """``n`` distinct RGB covers (n <= 8) from scikit-learn's two bundled photographs."""
    from sklearn.datasets import load_sample_images

    from veil.core.errors import ScenarioError

    if n > 8:
        raise ScenarioError(f"the sample covers give 8 distinct images; {n} shares need a folder")
    photos = load_sample_images().images
    turns = (lambda a: a, np.fliplr, np.flipud, lambda a: np.rot90(a, 2))
    return [np.ascontiguousarray(turns[i // 2](photos[i % 2])) for i in range(n)]


def _checks(files: list[Path], key: bytes, cfg: ShareImagesConfig, original: bytes) -> dict:
    """Rebuild the pixels (``original``) from k stego images; refuse k-1; name a share with
    one changed byte."""
    from veil.imaging.images import read_share
    from veil.imaging.shamir import ShareError, combine

    shares = [read_share(f, key, cfg.bits) for f in files]
    rebuilt = combine(shares[-cfg.k :]).secret[: len(original)] == original
    try:
        combine(shares[: cfg.k - 1])
        short_refused = False
    except ShareError:
        short_refused = True
    first = shares[0]
    altered = bytearray(first.payload)
    altered[len(altered) // 2] ^= 1
    bad = dataclasses.replace(first, payload=bytes(altered))
    named = first.index in combine([bad, *shares[1:]]).rejected if cfg.n > cfg.k else None
    return {"rebuilt_exactly_from_k": rebuilt, "k_minus_1_refused": short_refused,
            "changed_share_named": named}  # fmt: skip


@register_step("share-images", ShareImagesConfig, produces="shares")
def run_share_images(cfg: ShareImagesConfig, ctx: RunContext) -> Artifact:
    import secrets

    from veil.core.errors import ScenarioError
    from veil.core.io import write_private
    from veil.imaging.images import hide_in_covers, share_file, sharing_guarantee
    from veil.imaging.stego import cover_files, read_cover, write_png

    if cfg.k > cfg.n:
        raise ScenarioError(f"step {cfg.id}: k ({cfg.k}) cannot exceed n ({cfg.n})")
    path = image_path(cfg.image)
    shares, removed, pixels = share_file(path, cfg.k, cfg.n, cfg.keep_identifying)
    if cfg.covers == "sample":
        covers, names = sample_covers(cfg.n), [f"sample #{i + 1}" for i in range(cfg.n)]
    else:
        files = cover_files(cfg.covers, cfg.n)
        covers, names = [read_cover(f) for f in files], [f.name for f in files]
    key = secrets.token_bytes(32)
    stegos, carriers = hide_in_covers(shares, covers, names, key, cfg.bits)
    folder = ctx.out / "shares" / cfg.id
    folder.mkdir(parents=True, exist_ok=True)
    files = [
        write_png(folder / f"share-{s.index}.png", st) for s, st in zip(shares, stegos, strict=True)
    ]
    write_private(ctx.key_path(f"{cfg.id}.stego"), key.hex() + "\n")
    checks = _checks(files, key, cfg, np.ascontiguousarray(pixels).tobytes())
    entry = sharing_guarantee(cfg.k, cfg.n, path.name, carriers, removed, step=cfg.id)
    ctx.ledger.add(dataclasses.replace(entry, evidence={**entry.evidence, "checks": checks}))
    return Artifact("shares", folder, {"image": path.name, "k": cfg.k, "n": cfg.n})
