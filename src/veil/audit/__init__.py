"""Audits of what breaks veil's guarantees.

- :mod:`veil.audit.membership`: membership inference (threshold, shadow, LiRA) and the
  DP-bound check; ``veil.audit.membership(model, train_data, holdout_data, attack="lira")``.
- :mod:`veil.audit.dp_audit`: one-run empirical DP audit (an ε lower bound from canaries).
- :mod:`veil.audit.reconstruction`: gradient inversion of shared updates, model inversion
  of released models.
"""

from veil.audit.membership import (
    MembershipResult,
    audit_guarantee,
    dp_bound_holds,
    membership,
)

__all__ = ["MembershipResult", "audit_guarantee", "dp_bound_holds", "membership"]
