"""Foundation benchmarks: data loading times, veil's batching vs torch's DataLoader, plain training.

Writes benchmarks/results/core.json with keys ``load_seconds`` (per data set),
``batching`` (one epoch of MNIST batches: veil's index gather vs DataLoader, ratio),
``train`` (plain training accuracy and throughput on digits and MNIST).
"""

from __future__ import annotations

from functools import partial

import torch
from torch.utils.data import DataLoader

import common
from veil.core import data
from veil.core.train import batches, train_named


def load_times(quick: bool) -> dict:
    names = ["digits", "breast_cancer", "mnist"] + ([] if quick else ["fashion-mnist", "cifar10"])
    present = {s.name: s.present for s in data.status()}
    out = {}
    for name in names:
        if not present[name]:
            out[name] = None
            continue
        secs, ds = common.timed(lambda n=name: data.load(n, "train"))
        out[name] = {"seconds": round(secs, 3), "n": len(ds)}
    return out


def batching(quick: bool) -> dict:
    ds = data.load("mnist", "train")
    if quick:
        ds = ds.subset(range(10000))
    gen = torch.Generator().manual_seed(0)

    def veil_epoch():
        for _ in batches(ds, 256, shuffle=True, generator=gen):
            pass

    def loader_epoch():
        for _ in DataLoader(ds, batch_size=256, shuffle=True, generator=gen):
            pass

    r = common.compare(veil_epoch, loader_epoch, rounds=3 if quick else 5)
    return {
        "n": len(ds),
        "batch_size": 256,
        "veil_s": r["a_median_s"],
        "dataloader_s": r["b_median_s"],
        "speedup": r["ratio_b_over_a"],
    }


def training(quick: bool) -> dict:
    out = {}
    runs = [
        ("digits", "mlp", dict(epochs=20, batch_size=32, lr=0.05), None),
        (
            "mnist",
            "mnist-cnn",
            dict(epochs=1 if quick else 3, batch_size=64, lr=0.05),
            5000 if quick else None,
        ),
    ]
    for name, arch, kw, limit in runs:
        trained, peak = common.peak_memory(partial(train_named, name, arch, limit=limit, **kw))
        res = trained.result
        out[f"{name}/{arch}"] = {
            "test_accuracy": res.final["accuracy"],
            "epochs": kw["epochs"],
            "n_train": len(trained.train),
            "seconds": round(res.seconds, 2),
            "examples_per_s": round(kw["epochs"] * len(trained.train) / res.seconds),
            "peak_rss_mb": round(peak / 2**20, 1),
        }
    return out


def main() -> None:
    args = common.parser("core", __doc__).parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    results = {
        "load_seconds": load_times(args.quick),
        "batching": batching(args.quick),
        "train": training(args.quick),
    }
    common.write_results("core", results, args)


if __name__ == "__main__":
    main()
