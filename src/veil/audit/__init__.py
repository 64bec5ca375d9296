"""Audits of what breaks veil's guarantees: membership inference (more to come).

``veil.audit.membership(model, train_data, holdout_data, attack="lira", train_fn=...)``.
"""

from veil.audit.membership import (
    MembershipResult,
    audit_guarantee,
    dp_bound_holds,
    membership,
)

__all__ = ["MembershipResult", "audit_guarantee", "dp_bound_holds", "membership"]
