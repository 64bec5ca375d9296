"""De-identification training time: networks side by side against one after the other.

An ensemble's networks (``Options.networks``) and cross-fitting's fold taggers
(``veil.deid.train.held_out_counts``) train side by side in threads, each with its share of
torch's threads and a dropout generator of its own (``veil.deid.tagger.side_by_side``); fold
taggers as many at once as torch has threads per network.
Until now they trained one after the other, each on all of torch's threads. This script
times both ways in one process, round by round in rotating order, on the first train
patients' notes of the bench split with torch on 2 threads (as ``bench_deid.py``): an
ensemble of two and of three networks, and four fold taggers of one network and of three.
It also checks that a network trained side by side is, bit for bit, the one its seed
trains alone on its share of the threads.

Writes benchmarks/results/deid_train.json: seconds per round of each way and
``speedup_<case>`` (median over rounds of one-after-the-other's time over side-by-side's).
"""

from __future__ import annotations

import time
from dataclasses import replace
from functools import partial

import numpy as np
import torch

import common
from bench_deid import notes
from veil.deid.corpus import split_patients
from veil.deid.lexicon import Lexicon, default_folder
from veil.deid.tagger import BIASES, Ensemble, Options, Tagger
from veil.deid.train import held_out_counts


def one_after_the_other(train, lexicon, opts: Options) -> Tagger:
    """The tagger of ``opts``, its networks trained alone in turn on all of torch's threads."""
    alone = [Tagger.train(train, lexicon, replace(opts, networks=1, seed=opts.seed + i))
             for i in range(opts.networks)]  # fmt: skip
    if opts.networks == 1:
        return alone[0]
    return Tagger(Ensemble([t.net for t in alone]), alone[0].encoder, opts)


def folds_in_turn(train, lexicon, opts: Options, folds: int) -> np.ndarray:
    """Cross-fitting's counts with the fold taggers trained in turn (and their networks)."""
    out = []
    for part in split_patients(train, (1.0,) * folds, opts.seed):
        held = {n.patient for n in part}
        rest = [n for n in train if n.patient not in held]
        tagger = one_after_the_other(rest, lexicon, opts)
        out.append(np.stack([c for _, c in tagger.sweep_counts(part, BIASES)]))
    return np.concatenate(out, axis=1)


# each case: networks per tagger, and folds (0: the tagger alone, no cross-fitting)
CASES = {"ensemble2": (2, 0), "ensemble3": (3, 0), "folds4": (1, 4), "folds4_ensemble3": (3, 4)}


def together(train, lexicon, opts: Options, networks: int, folds: int):
    """The case as veil runs it: networks (and folds) side by side."""
    opts = replace(opts, networks=networks)
    if folds:
        return held_out_counts(train, lexicon, opts, folds, echo=lambda _line: None)
    return Tagger.train(train, lexicon, opts)


def in_turn(train, lexicon, opts: Options, networks: int, folds: int):
    """The case one network after the other, each on all of torch's threads."""
    opts = replace(opts, networks=networks)
    if folds:
        return folds_in_turn(train, lexicon, opts, folds)
    return one_after_the_other(train, lexicon, opts)


def same_as_alone(train, lexicon, opts: Options) -> bool:
    """Whether an ensemble's last network equals its seed trained alone on one thread."""
    together = Tagger.train(train, lexicon, opts)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads // opts.networks))
    try:
        last = replace(opts, networks=1, seed=opts.seed + opts.networks - 1)
        alone = Tagger.train(train, lexicon, last).net.state_dict()
    finally:
        torch.set_num_threads(threads)
    member = together.net.members[-1].state_dict()
    return all(torch.equal(v, alone[k]) for k, v in member.items())


def main() -> None:
    args = common.parser("deid_train", __doc__.split("\n\n")[0]).parse_args()
    allocator = common.steady_allocator()
    torch.set_num_threads(2)
    train, _, _ = split_patients(notes(), (0.7, 0.15, 0.15), seed=0)
    train = train[: 60 if args.quick else 300]
    rounds = 1 if args.quick else 3
    lexicon = Lexicon.from_folder(default_folder())
    opts = Options(epochs=1 if args.quick else 2, average_last=1)
    fns = {f"{name}_side_by_side": partial(together, train, lexicon, opts, *shape)
           for name, shape in CASES.items()}  # fmt: skip
    fns |= {f"{name}_in_turn": partial(in_turn, train, lexicon, opts, *shape)
            for name, shape in CASES.items()}  # fmt: skip
    started = time.perf_counter()
    times = common.round_robin(fns, rounds=rounds, warmup=0)
    res = {
        "notes": len(train),
        "epochs": opts.epochs,
        "rounds": rounds,
        "allocator": allocator,
        "torch_threads": torch.get_num_threads(),
        "seconds": {k: [round(t, 2) for t in v] for k, v in times.items()},
        **{
            f"speedup_{k}": common.ratios(times, f"{k}_side_by_side")[f"{k}_in_turn"] for k in CASES
        },  # fmt: skip
        "same_networks_as_alone": same_as_alone(train, lexicon, replace(opts, networks=2)),
    }
    res["bench_s"] = round(time.perf_counter() - started, 1)
    common.write_results("deid_train", res, args, "torch")


if __name__ == "__main__":
    main()
