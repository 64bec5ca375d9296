"""De-identification throughput: taggers of one, two and three networks against Presidio.

The recall goal favours ensembles (``bench_deid_seeds.py``), the throughput goal (>= 10x
Presidio with spaCy's small English model on the same notes) is paid per network. This
script times, in one process and round by round in rotating order, the shipped tagger, the
same tagger as an ensemble of two and of three networks (copies of its network: an
ensemble's cost does not depend on its weights) and Presidio (pattern recognizers, and with
spaCy's small model when installed) on the first 100 test notes of the bench split. The
allocator is held steady (``common.steady_allocator``) and torch uses 2 threads, as in
``bench_deid.py``. The BiLSTM runs in the precision ``VEIL_DEID_PRECISION`` picks (bfloat16 on
CPUs with AMX; recorded as ``precision``). Also the tagger's time by stage (rules, encoding,
networks, decoding).

Writes benchmarks/results/deid_speed.json: notes per second of each, and
``speedup_vs_<presidio>`` per network count (median over rounds of Presidio's time over the
tagger's in the same round).
"""

from __future__ import annotations

import copy
import statistics
import time

import torch

import common
from bench_deid import SPACY_SM, notes
from veil.core.errors import VeilError
from veil.deid import rules
from veil.deid.corpus import split_patients
from veil.deid.deidentify import load_tagger
from veil.deid.presidio import presidio_analyzer
from veil.deid.tagger import Ensemble, Tagger


def ensemble(one: Tagger, networks: int) -> Tagger:
    """``one`` as an ensemble of ``networks`` copies of its network."""
    if networks == 1:
        return one
    members = [one.net] + [copy.deepcopy(one.net) for _ in range(networks - 1)]
    return Tagger(Ensemble(members), one.encoder, one.opts, one.o_bias)


def stages(tagger: Tagger, sample, rounds: int) -> dict:
    """Median seconds of each stage of ``tagger.predict(sample)``."""

    def median(fn):
        return statistics.median(common.timed(fn)[0] for _ in range(rounds))

    found = [rules.spans(n.text) for n in sample]
    scored = tagger.emissions(sample, found)
    encode = median(lambda: tagger.encoder.encode(sample, gold=False, rule_spans=found))
    return {
        "rules_s": median(lambda: [rules.spans(n.text) for n in sample]),
        "encode_s": encode,
        "networks_s": median(lambda: tagger.emissions(sample, found)) - encode,
        "decode_s": median(lambda: tagger.decode(scored, len(sample))),
    }


def main() -> None:
    args = common.parser("deid_speed", __doc__).parse_args()
    allocator = common.steady_allocator()
    torch.set_num_threads(2)
    _, _, test = split_patients(notes(), (0.7, 0.15, 0.15), seed=0)
    sample = test[: 20 if args.quick else 100]
    rounds = 2 if args.quick else 7
    one = load_tagger(None)
    taggers = {n: ensemble(one, n) for n in (1, 2, 3)}
    fns = {f"tagger_{n}": (lambda t=t: t.predict(sample)) for n, t in taggers.items()}
    for name, package in (("presidio_patterns", None), ("presidio_spacy", SPACY_SM)):
        try:
            analyzer = presidio_analyzer(package)
        except VeilError as e:
            print(f"{name}: {e}")
            continue
        fns[name] = lambda a=analyzer: [a.analyze(text=n.text, language="en") for n in sample]
    started = time.perf_counter()
    times = common.round_robin(fns, rounds=rounds)
    res = {
        "notes": len(sample),
        "rounds": rounds,
        "allocator": allocator,
        "torch_threads": torch.get_num_threads(),
        "networks_are": "copies of the shipped tagger's network",
        "precision": one.precision,
        **{f"{k}_notes_per_s": len(sample) / statistics.median(v) for k, v in times.items()},
    }
    for n in taggers:  # Presidio's time over the tagger's, median over rounds
        for base, ratio in common.ratios(times, f"tagger_{n}").items():
            if base.startswith("presidio"):
                res[f"speedup_vs_{base}_networks{n}"] = ratio
    res["stages"] = {n: stages(t, sample, rounds) for n, t in taggers.items()}
    res["seconds"] = round(time.perf_counter() - started, 1)
    common.write_results("deid_speed", res, args, "torch", "presidio_analyzer", "spacy")


if __name__ == "__main__":
    main()
