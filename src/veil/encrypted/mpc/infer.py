"""Private inference of a saved model on a data set's test images, over threads or
processes, scored against the plaintext model (``veil mpc infer`` and the ``serve-mpc``
scenario step)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from veil.core.errors import ConfigError


def parse_range(text: str) -> tuple[float, float]:
    """``"LOW,HIGH"`` (the public range of the input values) as two floats, LOW < HIGH."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError as e:
        raise ConfigError(f"--input-range takes LOW,HIGH like 0,1; got {text!r}") from e
    if not low < high:
        raise ConfigError(f"--input-range needs LOW < HIGH, got {text!r}")
    return low, high


def test_images(name: str, limit: int | None, seed: int = 0):
    """``limit`` test images of data set ``name``, flattened to rows, and their labels."""
    from veil.core.data import sample_arrays

    x, y = sample_arrays(name, "test", limit, seed)
    return x.reshape(len(x), -1), y


def load_shared(path: Path):
    """A saved model compiled for inference on shares, and the loaded model."""
    from veil.core.io import load_model
    from veil.encrypted.mpc.model import compile_shared

    loaded = load_model(path)
    return compile_shared(loaded.model, loaded.spec.input_shape), loaded


def traffic_numbers(traffic, images: int) -> dict:
    """Rounds and bytes per image for the ledger, from one rank's traffic (over processes,
    the input owner's) or every rank's (threads: summed)."""
    ranks = traffic if isinstance(traffic, list) else [traffic]
    sent = sum(t["bytes_sent"] for t in ranks)
    who = "all_parties" if len(ranks) > 1 else "input_owner"
    return {"rounds": ranks[0]["rounds"], f"bytes_sent_per_image_{who}": round(sent / images, 1)}


def infer_saved(
    model: Path,
    data: str | None = None,
    limit: int = 100,
    engine: str = "processes",
    labels_only: bool = False,
    parties: int = 2,
    compare_bits: str = "auto",
    input_range: str = "0,1",
    dealer: str = "trusted",
) -> tuple[str, dict, int]:
    """Classify ``limit`` test images on shares; return the data set's name, the ledger's
    numbers (accuracy on shares and in plaintext, argmax agreement, error, time, traffic)
    and the comparison width used. Over ``processes`` the ranks and the dealer are started
    on 127.0.0.1 and stopped."""
    from veil.encrypted.mpc.launch import run_processes
    from veil.encrypted.mpc.model import infer_threads

    shared, loaded = load_shared(model)
    name = loaded.data_name(data, hint="pass --data")
    x, y = test_images(name, limit)
    if engine == "threads":
        start = time.perf_counter()
        bounds = parse_range(input_range)
        out = infer_threads(shared, x, labels_only=labels_only, parties=parties,
                            compare_bits=compare_bits, input_range=bounds)  # fmt: skip
        out["seconds"] = time.perf_counter() - start
    elif engine == "processes":
        out = run_processes(model, name, limit, labels_only=labels_only, parties=parties,
                            compare_bits=compare_bits, input_range=input_range,
                            client_dealer=dealer == "client")  # fmt: skip
    else:
        raise ConfigError(f"unknown engine {engine!r}; use processes or threads")
    plain = shared.forward(x)
    logits = None if labels_only else np.asarray(out["logits"])
    predicted = np.asarray(out["labels"]) if labels_only else logits.argmax(1)
    numbers = {
        "images": len(x),
        "accuracy_mpc": float((predicted == y).mean()),
        "accuracy_plain": float((plain.argmax(1) == y).mean()),
        "argmax_agreement": float((predicted == plain.argmax(1)).mean()),
        "seconds": round(out["seconds"], 3),
        **traffic_numbers(out["traffic"], len(x)),
    }
    if logits is not None:
        numbers["max_abs_error"] = float(np.abs(logits - plain).max())
    return name, numbers, out["compare_bits"]
