"""Membership inference benchmarks: LiRA and the threshold attack on non-private and DP models.

MNIST, 1,000 members and 1,000 non-members (the rest of a 2,000-image pool), an MLP
(784-256-10). The non-private target trains 40 epochs; DP targets train with DP-SGD at
ε = 1 and 8 (δ = 1e-5). LiRA's reference models use the target's own recipe (DP-SGD for
the DP targets), each trained on a random half of the pool. For DP targets the measured ROC
is checked against the analytic bound TPR <= e^ε·FPR + δ.

Then one-run DP audits (mislabelled canaries, Steinke et al. 2023) of the same recipes.

Writes benchmarks/results/membership.json: nonprivate_lira_auc,
nonprivate_lira_tpr_at_1e-3, nonprivate_threshold_tpr_at_1e-3, eps1_lira_tpr_at_1e-3,
audit_lower_bound_nonprivate, audit_lower_bound_eps1, audit_lower_bound_eps8.
"""

from __future__ import annotations

import time

import torch

import common
from veil import dp
from veil.audit import dp_bound_holds, membership
from veil.audit.dp_audit import one_run_audit
from veil.core import data, models
from veil.core.train import fit


def recipe(epsilon: float | None):
    """The training recipe; every call draws fresh initial weights, sampling and noise (the
    DP guarantee assumes the noise is secret: reusing a seed across runs would void it)."""
    calls = iter(range(10**6))

    def train_fn(ds):
        torch.manual_seed(1000 + next(calls))
        net = models.build("mlp", ds.input_shape, 10, hidden=[256])
        if epsilon is None:
            fit(net, ds, epochs=40, lr=0.05, batch_size=32, seed=next(calls), quiet=True)
            return net
        settings = dict(epochs=20, batch_size=200, lr=0.5, momentum=0.0, clip=1.0)
        dp.train(net, ds, epsilon=epsilon, delta=1e-5, seed=next(calls), quiet=True, **settings)
        return net

    return train_fn


def main() -> None:
    args = common.parser("membership", __doc__).parse_args()
    n, shadows = (300, 4) if args.quick else (1000, 16)
    pool = data.load("mnist", "train")
    perm = torch.randperm(len(pool), generator=torch.Generator().manual_seed(0))
    members, nonmembers = pool.subset(perm[:n]), pool.subset(perm[n : 2 * n])
    results = {"members": n, "reference_models": shadows}
    for label, eps in (("nonprivate", None), ("eps1", 1.0), ("eps8", 8.0)):
        start = time.perf_counter()
        train_fn = recipe(eps)
        target = train_fn(members)
        lira = membership(target, members, nonmembers, "lira", train_fn, shadows, quiet=True)
        thr = membership(target, members, nonmembers, "threshold")
        shadow = membership(target, members, nonmembers, "shadow", train_fn, shadows, quiet=True)
        results[f"{label}_shadow_auc"] = shadow.auc
        results[f"{label}_shadow_tpr_at_1e-3"] = shadow.tpr_at["0.001"]
        results[f"{label}_lira_auc"] = lira.auc
        results[f"{label}_lira_tpr_at_1e-3"] = lira.tpr_at["0.001"]
        results[f"{label}_lira_tpr_at_1e-2"] = lira.tpr_at["0.01"]
        results[f"{label}_threshold_auc"] = thr.auc
        results[f"{label}_threshold_tpr_at_1e-3"] = thr.tpr_at["0.001"]
        results[f"{label}_seconds"] = round(time.perf_counter() - start, 1)
        if eps is not None:
            results[f"{label}_roc_under_dp_bound"] = dp_bound_holds(lira, eps, 1e-5)
    results.update(dp_audits(args.quick))
    common.write_results("membership", results, args, "scikit-learn")


def dp_audits(quick: bool) -> dict:
    """One-run audits (Steinke et al. 2023): 5,000 MNIST images plus 1,000 mislabelled
    canaries from the test split, half of them included; 200 guesses; 95% confidence."""
    pool, base = data.load("mnist", "test"), data.load("mnist", "train")
    base = base.subset(torch.randperm(len(base), generator=torch.Generator().manual_seed(3))[:5000])
    m = 400 if quick else 1000
    out = {"audit_canaries": m}
    for label, eps in (("nonprivate", None), ("eps1", 1.0), ("eps8", 8.0)):
        result = one_run_audit(recipe(eps), base, pool, canaries=m, guesses=m // 5)
        out[f"audit_lower_bound_{label}"] = result.epsilon_lower_bound
        out[f"audit_correct_{label}"] = f"{result.correct}/{result.guesses}"
    return out


if __name__ == "__main__":
    main()
