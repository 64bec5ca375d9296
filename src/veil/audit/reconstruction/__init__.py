"""Reconstruction attacks: can someone rebuild training data from what veil releases?

- :mod:`~veil.audit.reconstruction.gradient`: gradient inversion of shared updates (full,
  DSSGD, FedAvg, DP-SGD; batches of 1 to 8; iDLG label recovery).
- :mod:`~veil.audit.reconstruction.model`: model inversion of a released model (white box,
  or black box within a query budget).
- :mod:`~veil.audit.reconstruction.scoring`: PSNR/SSIM with matching, the TV prior, images
  for the report.
"""

from veil.audit.reconstruction.gradient import (
    Observed,
    audit,
    guarantee,
    invert,
    linear_closed_form,
    observe,
    recover_label,
    recover_labels,
)
from veil.audit.reconstruction.scoring import save_images, score

__all__ = [
    "Observed",
    "audit",
    "guarantee",
    "invert",
    "linear_closed_form",
    "observe",
    "recover_label",
    "recover_labels",
    "save_images",
    "score",
]
