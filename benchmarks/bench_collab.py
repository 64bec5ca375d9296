"""Collaborative learning: reproduce Shokri & Shmatikov's DSSGD on MNIST, and FedAvg.

MNIST, the ``mlp`` network (784-128-64-10), disjoint IID shards, plain SGD (lr 0.1, batch
32), one local epoch per exchange. Side by side in one run: centralized (all shards pooled,
as many epochs as rounds), standalone (each participant alone, mean test accuracy), DSSGD
at theta_u = 1%, 10%, 100% (round-robin), 10% asynchronous, 10% with DP selection, 10% with
local DP-SGD, 10% with the residual extension, 30 participants at 10%, FedAvg; accuracy,
bytes uploaded per participant-step against a dense float32 upload, wall time. Then
Flower's overhead per round: 3 nodes on 127.0.0.1 against the same run in-process.

``--quick``: digits instead of MNIST, fewer rounds (under a few minutes on 2 cores).

Writes benchmarks/results/collab.json: centralized_accuracy, standalone_accuracy,
dssgd_accuracy_1pct, dssgd_accuracy_10pct, dssgd_accuracy_100pct, dssgd_gap_pt_10pct,
upload_fraction_10pct, flower_round_overhead_s, and every run's details.
"""

from __future__ import annotations

import statistics
import time

import common
from veil import collab


def _config(data: str, participants: int, rounds: int, **dssgd) -> collab.CollabConfig:
    algo = dssgd.pop("algo", "dssgd")
    order = dssgd.pop("order", "round-robin")
    local = collab.LocalTraining(lr=0.1, batch_size=32, epochs=1.0, **dssgd.pop("local", {}))
    return collab.CollabConfig(
        algo=algo,
        data=data,
        participants=participants,
        rounds=rounds,
        order=order,
        local=local,
        dssgd=collab.DSSGDConfig(**dssgd),
    )


def _run(name: str, cfg: collab.CollabConfig) -> dict:
    t0 = time.perf_counter()
    r = collab.run(cfg, quiet=True)
    accs = [h["global_accuracy"] for h in r.history]
    row = {
        "accuracy": r.final_accuracy,
        "best_accuracy": max(accs),
        "accuracy_per_round": accs,
        "upload_fraction": r.totals["upload_fraction"],
        "updates_accepted": r.totals["updates_accepted"],
        "updates_rejected": r.totals["updates_rejected"],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    row |= {k: v for k, v in r.guarantee.numbers.items() if "epsilon" in k}
    print(f"{name}: {row['accuracy']:.4f} upload {row['upload_fraction']:.3f} {row['seconds']} s")
    return row


def flower_overhead(rounds: int) -> dict:
    """Seconds per round on Flower minus in-process, 3 nodes, after the first round."""
    cfg = collab.CollabConfig(data="digits", participants=3, rounds=rounds, eval_limit=200)
    on_flower = collab.train(cfg, engine="flower", timeout=60)
    local = collab.run(cfg, quiet=True)
    per_round = [
        f["seconds"] - i["seconds"]
        for f, i in zip(on_flower.history[1:], local.history[1:], strict=True)
    ]
    return {
        "flower_round_overhead_s": statistics.median(per_round),
        "flower_round_overhead_max_s": max(per_round),
        "flower_first_round_s": on_flower.history[0]["seconds"],
        "flower_total_s": on_flower.totals["seconds"],
        "flower_equals_in_process": bool(
            (collab.participant.flat(on_flower.model) == collab.participant.flat(local.model)).all()
        ),
        "nodes": 3,
        "rounds": rounds,
    }


def main() -> None:
    args = common.parser("collab", __doc__.splitlines()[0]).parse_args()
    data, rounds, many = ("digits", 10, 10) if args.quick else ("mnist", 20, 30)
    five = {"data": data, "participants": 5, "rounds": rounds}
    base = collab.baselines(_config(**five), quiet=True)
    runs = {}
    for parts, tag in ((five, ""), ({**five, "participants": many}, f"_{many}p")):
        for pct, theta in (("1pct", 0.01), ("10pct", 0.1), ("100pct", 1.0)):
            shared = {"theta_up": theta, "theta_down": 1.0, "residual": theta < 1}
            runs[f"dssgd_{pct}{tag}"] = _config(**parts, **shared)
            runs[f"dssgd_{pct}_async{tag}"] = _config(
                **parts, **shared, order="async", staleness=10
            )
        private = {"upload": "svt", "gamma": 0.01, "tau": 0.0001, "dp_epsilon": 8.0}
        runs[f"dssgd_10pct_dp_eps8{tag}"] = _config(
            **parts, theta_up=0.1, theta_down=1.0, **private
        )
    runs |= {
        "dssgd_10pct_paper": _config(**five, theta_up=0.1, theta_down=1.0),
        "dssgd_10pct_paper_down10": _config(**five, theta_up=0.1, theta_down=0.1),
        "dssgd_10pct_local_dpsgd": _config(
            **five, theta_up=0.1, theta_down=1.0, residual=True, local={"dp_sigma": 1.0}
        ),
        "fedavg": _config(**five, algo="fedavg"),
    }
    rows = {name: _run(name, cfg) for name, cfg in runs.items()}
    wide = {"data": data, "participants": many, "rounds": rounds}
    base_wide = collab.baselines(_config(**wide), quiet=True)
    flower = flower_overhead(4 if args.quick else 6)
    results = {
        "data": data,
        "rounds": rounds,
        "centralized_accuracy": base["centralized_accuracy"],
        "standalone_accuracy": base["standalone_accuracy"],
        f"standalone_accuracy_{many}p": base_wide["standalone_accuracy"],
        "dssgd_accuracy_1pct": rows["dssgd_1pct"]["accuracy"],
        "dssgd_accuracy_10pct": rows["dssgd_10pct"]["accuracy"],
        "dssgd_accuracy_10pct_paper": rows["dssgd_10pct_paper"]["accuracy"],
        "dssgd_accuracy_100pct": rows["dssgd_100pct"]["accuracy"],
        "dssgd_gap_pt_10pct": 100
        * (base["centralized_accuracy"] - rows["dssgd_10pct"]["accuracy"]),
        "dssgd_gap_pt_10pct_paper": 100
        * (base["centralized_accuracy"] - rows["dssgd_10pct_paper"]["accuracy"]),
        "upload_fraction_10pct": rows["dssgd_10pct"]["upload_fraction"],
        "flower_round_overhead_s": flower["flower_round_overhead_s"],
        "runs": rows,
        "flower": flower,
    }
    common.write_results("collab", results, args, "torch", "flwr", "numpy")


if __name__ == "__main__":
    main()
