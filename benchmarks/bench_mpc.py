"""Secure two-party inference benchmarks: throughput, latency, rounds, bytes, accuracy.

Three MNIST networks trained here (Adam, 3 epochs): an MLP 784-128-10 with ReLU, the same
with x², and a small CNN (conv 5x5 stride 2, 5 channels, ReLU, dense 10). Each runs as three
processes on 127.0.0.1 (model owner, input owner, dealer; torch.distributed over TCP, one
thread each): a batch of 10,000 test images (throughput) and single images (latency), with
rounds and bytes counted by the parties and accuracy compared with the plaintext model on
the same images. Also in one process (threads), to show the transport's share. The latency a
real network would add is rounds x its round-trip time. Secure training: SGD steps of an MLP
784-128-10 on 10,000 MNIST records shared by two parties (batch 64): 500 steps in threads
for accuracy against the same steps in plaintext, 50 over processes for the step time.
The ReLU MLP's inference and the training step also with three computing parties, and the
training with its model kept in shares, then used for inference on shares.

Writes benchmarks/results/mpc.json: images_per_s_batched, single_image_latency_ms,
rounds_per_image, bytes_per_image, accuracy_drop_pt, train_step_s (headline: the ReLU MLP).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

import common
from veil.core import data as data_mod
from veil.core.data import sample_indices
from veil.core.io import save_model
from veil.core.models import spec_of
from veil.core.train import fit, prepare
from veil.encrypted.mpc.launch import run_processes
from veil.encrypted.mpc.model import compile_shared, infer_threads


def images(n: int | None):
    test = data_mod.load(DATA, "test")
    x, y = test.batch(torch.as_tensor(sample_indices(len(test), n)))
    return x.numpy().reshape(len(x), -1), y.numpy()


def trained(name: str, epochs: int, folder: Path) -> tuple:
    p = prepare(DATA, "mlp", model_options={"hidden": [128]})
    shape = p.train.input_shape
    if name == "mlp-relu":
        model = p.model
    elif name == "mlp-square":
        p.spec = spec_of("mlp", shape, p.train.num_classes, hidden=[128], activation="square")
        model = p.spec.build()
    else:  # a small CNN with ReLU; saved with a spec the loader can rebuild
        p.spec = spec_of("he-cnn", shape, p.train.num_classes, hidden=0)
        model = p.spec.build()
        model[0][1] = nn.ReLU()  # conv, ReLU, dense (not a registered network: kept in memory)
    fit(model, p.train, epochs=epochs, optimizer="adam", lr=1e-3)
    path = folder / f"{name}.veil"
    if name != "cnn-relu":
        save_model(path, model, p.spec, extra={"data": DATA})
    return path, model, shape


def measure(name: str, epochs: int, batch: int, singles: int, folder: Path) -> dict:
    path, model, shape = trained(name, epochs, folder)
    shared = compile_shared(model, shape)
    x, y = images(batch)
    plain = shared.forward(x)
    t, local = common.timed(lambda: infer_threads(shared, x))
    out = {
        "model": name,
        "stages": [
            type(s).__name__ + (f" {s.kind}" if hasattr(s, "kind") else "") for s in shared.stages
        ],
        "batch": len(x),
        "accuracy_plain": float((plain.argmax(1) == y).mean()),
        "threads_images_per_s": len(x) / t,
    }
    logits = local["logits"]
    if path.exists():  # processes load the model from its file
        big = run_processes(path, DATA, batch)
        logits = np.asarray(big["logits"])
        traffic = big["traffic"]
        out["images_per_s_batched"] = len(x) / big["seconds"]
        one = run_processes(path, DATA, 1, repeat=singles + 1)  # the first run warms up
        out["single_image_latency_ms"] = 1000 * one["seconds"]
        out["single_image_runs_ms"] = [1000 * t for t in one["times"]]
        out["rounds_per_image"] = one["traffic"]["rounds"]
        out["compare_bits"] = big["compare_bits"]  # "auto": 32 where interval bounds allow
        if name == "mlp-relu":  # the argmax on shares too: rank 1 learns labels only
            out.update(full_width(path, shared, x, singles, plain))
            out.update(three_parties(path, batch, singles, plain))
            lab = run_processes(path, DATA, batch, labels_only=True)
            out["labels_only_images_per_s"] = len(x) / lab["seconds"]
            out["labels_only_agreement"] = float(
                np.mean(np.asarray(lab["labels"]) == plain.argmax(1))
            )
            one = run_processes(path, DATA, 1, repeat=singles + 1, labels_only=True)
            out["labels_only_latency_ms"] = 1000 * one["seconds"]
            out["labels_only_rounds"] = one["traffic"]["rounds"]
    else:
        traffic = local["traffic"][1]
        out["images_per_s_batched"] = out["threads_images_per_s"]
    sent = sum(t["bytes_sent"] for t in local["traffic"])  # both parties, one batch
    out["bytes_per_image"] = sent / len(x)
    out["rank1_traffic"] = traffic
    out["accuracy_mpc"] = float((logits.argmax(1) == y).mean())
    out["accuracy_drop_pt"] = round(100 * (out["accuracy_plain"] - out["accuracy_mpc"]), 3)
    out["argmax_agreement"] = float((logits.argmax(1) == plain.argmax(1)).mean())
    out["max_abs_logit_error"] = float(np.abs(logits - plain).max())
    for rtt_ms in (1, 50):
        out[f"latency_added_at_{rtt_ms}ms_rtt_ms"] = out.get("rounds_per_image", 0) * rtt_ms
    return out


def batch_and_single(path: Path, batch: int, singles: int, **options) -> tuple[dict, dict]:
    """One batch over processes, then ``singles`` single-image inferences in one session."""
    big = run_processes(path, DATA, batch, **options)
    return big, run_processes(path, DATA, 1, repeat=singles + 1, **options)


def full_width(path: Path, shared, x: np.ndarray, singles: int, plain: np.ndarray) -> dict:
    """The same network with 64-bit comparisons (exact for any encodable value)."""
    batch = len(x)
    local = infer_threads(shared, x, compare_bits=64)
    big, one = batch_and_single(path, batch, singles, compare_bits=64)
    return {
        "images_per_s_batched_64bit": batch / big["seconds"],
        "single_image_latency_ms_64bit": 1000 * one["seconds"],
        "rounds_per_image_64bit": one["traffic"]["rounds"],
        "bytes_per_image_64bit": sum(t["bytes_sent"] for t in local["traffic"]) / batch,
        "agreement_64bit": float(np.mean(np.asarray(big["logits"]).argmax(1) == plain.argmax(1))),
    }


def three_parties(path: Path, batch: int, singles: int, plain: np.ndarray) -> dict:
    """The same network with three computing parties (4 processes with the dealer)."""
    big, one = batch_and_single(path, batch, singles, parties=3)
    return {
        "three_parties_images_per_s": batch / big["seconds"],
        "three_parties_latency_ms": 1000 * one["seconds"],
        "three_parties_rounds": one["traffic"]["rounds"],
        "three_parties_agreement": float(
            np.mean(np.asarray(big["logits"]).argmax(1) == plain.argmax(1))
        ),
    }


def kept_shared(p, parts, schedule) -> dict:
    """The same training with the model kept in shares, then the whole test set classified
    with weights and input both shared (threads): nobody ever holds the model."""
    from veil.encrypted.mpc.train import train_threads

    got = train_threads(p.model, parts, 10, schedule, keep_shared=True)
    tx, ty = p.test.batch(torch.arange(len(p.test)))
    seconds, out = common.timed(
        lambda: infer_threads(
            None,
            tx.numpy().reshape(len(tx), -1),
            weight_shares=got["weight_shares"],
            sharing_ids=[got["sharing_id"]] * 2,
        )  # fmt: skip
    )
    return {
        "kept_shared_test_accuracy": float((out["logits"].argmax(1) == ty.numpy()).mean()),
        "kept_shared_images_per_s_threads": len(tx) / seconds,
    }


def secure_training(steps: int, timed_steps: int, folder: Path) -> dict:
    """SGD of an MLP 784-128-10 (ReLU) on records shared by two parties (10,000 MNIST
    training records, every other one each), batch 64, lr 0.1: ``steps`` in threads for
    the accuracy (against the same steps in plaintext), ``timed_steps`` over processes for
    the step time."""
    from veil.core.train import evaluate
    from veil.encrypted.mpc.launch import train_processes
    from veil.encrypted.mpc.train import Schedule, parts_of, plain_sgd, pooled, train_threads

    limit = 600 if DATA == "digits" else 10_000
    p = prepare(DATA, "mlp", model_options={"hidden": [128]}, limit=limit, seed=0)
    x, y = p.train.batch(torch.arange(len(p.train)))  # the records train-party samples too
    parts = parts_of(x.numpy(), y.numpy())
    schedule = Schedule(steps, batch=64, lr=0.1)
    got = train_threads(p.model, parts, 10, schedule)
    ref = plain_sgd(p.model, *pooled(parts), schedule)
    secure, plain = evaluate(got["model"], p.test)["accuracy"], evaluate(ref, p.test)["accuracy"]
    initial = folder / "initial.veil"
    save_model(initial, p.model, p.spec, classes=list(p.train.classes))
    timed = Schedule(timed_steps, batch=64, lr=0.1)
    over = train_processes(initial, DATA, limit, timed, folder / "trained.veil")
    plain_s, _ = common.timed(lambda: plain_sgd(p.model, *pooled(parts), timed))
    three = train_processes(initial, DATA, limit, timed, folder / "trained3.veil", parties=3)
    traffic = over["traffic"]
    return {
        **kept_shared(p, parts, schedule),
        "train_step_s_three_parties": three["seconds"] / timed_steps,
        "train_steps": steps,
        "train_accuracy_mpc": secure,
        "train_accuracy_plain": plain,
        "train_accuracy_drop_pt": round(100 * (plain - secure), 3),
        "train_step_s_threads": got["seconds"] / steps,
        "train_step_s_processes": over["seconds"] / timed_steps,
        "train_step_s_plaintext": plain_s / timed_steps,
        "train_rounds_per_step": traffic["rounds"] / timed_steps,
        "train_bytes_per_step": traffic["bytes_sent"] / timed_steps,
    }


def main() -> None:
    global DATA
    args = common.parser("mpc", __doc__.splitlines()[0]).parse_args()
    DATA = "digits" if args.quick else "mnist"
    epochs, batch, singles = (10, 400, 3) if args.quick else (3, 10_000, 21)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {
            n: measure(n, epochs, batch, singles, Path(tmp))
            for n in ("mlp-relu", "mlp-square", "cnn-relu")
        }
        training = secure_training(*((30, 10) if args.quick else (500, 50)), Path(tmp))
    relu = runs["mlp-relu"]
    headline = {
        k: relu[k]
        for k in (
            "images_per_s_batched",
            "single_image_latency_ms",
            "rounds_per_image",
            "bytes_per_image",
            "accuracy_drop_pt",
        )
    }
    results = {**headline, "train_step_s": training["train_step_s_processes"], "data": DATA,
               **runs, "training": training}  # fmt: skip
    common.write_results("mpc", results, args, "cryptography")


DATA = "mnist"

if __name__ == "__main__":
    main()
