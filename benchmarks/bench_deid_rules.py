"""Calibration rules for the recall bias, read off the counts ``bench_deid_seeds.py`` keeps.

A run of ``bench_deid_seeds.py`` keeps, per seed, the token counts of every note at every
bias of the grid: on the fold notes (each scored by a tagger trained without it) and on the
test notes (``<out>-seed<N>.npz``). A rule picks a bias from the fold counts alone; this
script applies several to every kept file and reads the test recall and precision at the
bias each picks, with no training:

- ``bound90``: the most recall whose fold precision is >= 0.90 with 90% confidence (a
  bootstrap lower bound over the notes): the benchmarks' headline rule;
- ``bound75``: the same bound at 75% confidence;
- ``point``: the most recall whose fold precision itself is >= 0.90;
- ``test_best``: the most test recall at test precision >= 0.90, which no deployment can
  choose (it reads the test notes): what the network could give.

Writes benchmarks/results/deid_rules.json: per file and rule the bias, the folds' recall and
precision there, the test recall and precision, and whether the goal (recall >= 0.97 with
precision >= 0.90) is met; and per rule how many files meet it. ``--quick`` reads the same
files (it trains nothing) and writes to ``--out``.
"""

from __future__ import annotations

import time

import numpy as np

import common
from bench_deid import goal_met
from veil.deid.evaluate import scores
from veil.deid.tagger import pick_bias

RULES = {"bound90": 0.90, "bound75": 0.75, "point": None}


def one_file(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        grid, pooled, test = z["grid"], z["pooled"], z["test"]
    out = {}
    for name, confidence in RULES.items():
        chosen = pick_bias(zip(grid, pooled, strict=True), min_precision=0.90,
                           confidence=confidence)  # fmt: skip
        out[name] = at(grid, test, chosen["o_bias"], folds=chosen)
    best = pick_bias(zip(grid, test, strict=True), min_precision=0.90)
    out["test_best"] = at(grid, test, best["o_bias"])
    return out


def at(grid, test, bias: float, folds: dict | None = None) -> dict:
    """Test scores at ``bias`` (and what the folds read there)."""
    on_test = scores(test[int(np.flatnonzero(grid == bias)[0])])
    row = {"o_bias": bias, "token_recall": on_test["recall"],
           "token_precision": on_test["precision"]}  # fmt: skip
    if folds is not None:
        row["folds_recall"], row["folds_precision"] = folds["recall"], folds["precision"]
    row["goal_met"] = goal_met(row)
    return row


def main() -> None:
    args = common.parser("deid_rules", __doc__.split("\n\n")[0]).parse_args()
    started = time.perf_counter()
    files = sorted(common.RESULTS.glob("deid_seeds*-seed*.npz"))
    if not files:
        raise SystemExit(f"no kept counts in {common.RESULTS}: run bench_deid_seeds.py first")
    per_file = {f.name: one_file(f) for f in files}
    rules = [*RULES, "test_best"]
    res = {
        "files": per_file,
        "goal_met": {
            r: sorted(n for n, row in per_file.items() if row[r]["goal_met"]) for r in rules
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    common.write_results("deid_rules", res, args)


if __name__ == "__main__":
    main()
