"""The de-identification headline over several seeds: how much of it is the seed.

For each seed the headline recipe of ``bench_deid.py --train-on-dev`` runs alone (the
patient split stays seed 0): one tagger trains on the train and dev patients, four more
score those patients' notes without their fold, the bias is the one with the highest
recall whose precision on those notes is >= 0.90 with 75% confidence (``--confidence``; files
before the recipe of run 12: 90%), and the test patients
are scored there. Also recorded per seed: the test curve and the best test recall at test
precision >= 0.90 (a figure no deployment can choose, read to tell the network from the
calibration). No Presidio, no collaborative runs: those are in ``bench_deid.py``.

Writes benchmarks/results/deid_seeds.json: per seed token_recall, token_precision, o_bias;
goal_met_seeds (recall >= 0.97 with precision >= 0.90 at the calibrated bias). The file is
written after each seed (a seed takes half an hour to an hour); ``--resume`` keeps the seeds
already in ``--out`` (same networks, folds and epochs) and runs only the others. Beside it,
``<out>-seed<N>.npz`` keeps each seed's token counts per note at every bias of the grid, on the
folds (``pooled``) and on the test notes (``test``): another calibration rule can be read
from them without training again (:func:`counts_path`).
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch

import common
from bench_deid import curve, goal_met, notes, scored
from veil.deid.corpus import split_patients
from veil.deid.lexicon import Lexicon, default_folder
from veil.deid.tagger import BIASES, Options, Tagger
from veil.deid.train import held_out_counts


def one_seed(seed: int, held_in, test, lexicon, args) -> dict:
    opts = Options(epochs=args.epochs, average_last=min(10, args.epochs), seed=seed,
                   networks=args.networks)  # fmt: skip
    started = time.perf_counter()
    tagger = Tagger.train(held_in, lexicon, opts)
    pooled = held_out_counts(held_in, lexicon, opts, args.folds, echo=print)
    calibration = {"min_precision": 0.90, "confidence": args.confidence, "pooled": pooled}
    point, result = scored(tagger, [], test, calibration, draws=0)
    on_test = np.stack([c for _, c in tagger.sweep_counts(test, BIASES)])
    np.savez_compressed(counts_path(args, seed), grid=np.array(BIASES), pooled=pooled,
                        test=on_test)  # fmt: skip
    return {
        "seed": seed,
        "o_bias": point["o_bias"],
        "pooled_point": point,
        **{k: result[k] for k in ("token_recall", "token_precision", "token_f1")},
        "goal_met": goal_met(result),
        "test_curve": curve(tagger, test),
        # calibrating on the test notes themselves: the most test recall at test precision
        # >= 0.90 (it moves the tagger's bias, so it comes last)
        "test_best_recall_at_precision_0.90": tagger.calibrate(test, min_precision=0.90),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    p = common.parser("deid_seeds", __doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--folds", type=int, default=4)
    p.add_argument(
        "--networks",
        type=int,
        default=3,
        help="networks per tagger, their scores averaged (seeds seed, seed + 1, ...); the "
        "recipe's 3 since run 12 (the kept files before: --networks 1, 2 and 3)",
    )
    p.add_argument("--confidence", type=float, default=0.75,
                   help="the fold precision >= 0.90 is held with this confidence (the "
                   "recipe's 0.75 since run 12; the kept files before: 0.90)")  # fmt: skip
    p.add_argument("--resume", action="store_true",
                   help="keep the seeds already in --out and run only the others")  # fmt: skip
    args = p.parse_args()
    common.steady_allocator()
    torch.set_num_threads(2)
    train, dev, test = split_patients(notes(), (0.7, 0.15, 0.15), seed=0)
    if args.quick:
        train, dev, test = train[:120], dev[:40], test[:60]
        args.epochs, args.folds = 2, 2
    lexicon = Lexicon.from_folder(default_folder())
    runs = earlier_runs(args) if args.resume else []
    for seed in args.seeds:
        if any(r["seed"] == seed for r in runs):
            print(f"seed {seed}: kept from {args.out}")
            continue
        runs.append(one_seed(seed, train + dev, test, lexicon, args))
        print(f"seed {seed}: test {runs[-1]['token_recall']:.3f} recall at "
              f"{runs[-1]['token_precision']:.3f} precision")  # fmt: skip
        common.write_results("deid_seeds", summary(runs, len(train) + len(dev), len(test), args),
                             args, "torch")  # fmt: skip


def counts_path(args, seed: int):
    """Where a seed's token counts go: (biases, notes, 3) arrays of true positives, false
    positives and misses per note (:func:`veil.deid.evaluate.token_counts`), ``grid`` the
    biases; load with ``np.load(path)`` (no pickles)."""
    return args.out.with_name(f"{args.out.stem}-seed{seed}.npz")


def settings(args) -> dict:
    return {"folds": args.folds, "networks": args.networks, "epochs": args.epochs,
            "confidence": args.confidence}  # fmt: skip


def earlier_runs(args) -> list[dict]:
    """The runs already in ``args.out`` if they were made with the same settings."""
    if not args.out.exists():
        return []
    doc = json.loads(args.out.read_text())
    res = doc["results"]
    # files written before "epochs" and "confidence" were recorded came from the defaults of
    # then, 20 and 0.90 (their commands name neither)
    before = {"folds": res["folds"], "networks": res.get("networks", 1),
              "epochs": res.get("epochs", 20),
              "confidence": res.get("confidence", 0.90)}  # fmt: skip
    if doc["quick"] != bool(args.quick) or before != settings(args):
        raise SystemExit(f"{args.out} was made with {before} (quick {doc['quick']}), "
                         f"not {settings(args)}: --resume needs the same settings")  # fmt: skip
    return res["runs"]


def summary(runs: list[dict], held_in: int, test: int, args) -> dict:
    recalls = [r["token_recall"] for r in runs]
    return {
        "split": {"train+dev": held_in, "test": test, "seed": 0},
        **settings(args),
        "runs": runs,
        "goal_met_seeds": [r["seed"] for r in runs if r["goal_met"]],
        "token_recall_range": [min(recalls), max(recalls)],
    }


if __name__ == "__main__":
    main()
