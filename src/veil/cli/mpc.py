"""``veil mpc``: private inference by two non-colluding parties and a dealer (secret sharing)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(
    help="Secure two-party computation (input and output privacy): the model owner and the "
    "input owner compute on additive shares; only the input owner sees the result. Threat "
    "model: semi-honest parties that do not collude, and a dealer that colludes with neither.",
    no_args_is_help=True,
)


def _images(name: str, limit: int | None, seed: int = 0):
    from veil.core.data import sample_arrays

    x, y = sample_arrays(name, "test", limit, seed)
    return x.reshape(len(x), -1), y


def _shared_model(path: Path):
    from veil.core.io import load_model
    from veil.encrypted.mpc.model import compile_shared

    loaded = load_model(path)
    return compile_shared(loaded.model, loaded.spec.input_shape), loaded


@app.command("party")
def party(
    rank: int = typer.Option(..., help="0: model owner, 1: input owner, 2: dealer."),
    master: str = typer.Option(..., help="HOST:PORT where rank 0 listens for the others."),
    model: Path = typer.Option(None, help="Rank 0: the .veil model file."),
    data: str = typer.Option(None, "--data", "-d", help="Rank 1: data set to classify."),
    limit: int = typer.Option(100, help="Rank 1: test images (random, seeded)."),
    repeat: int = typer.Option(1, help="Run the inference this many times (latency: warm runs)."),
    result: Path = typer.Option(None, help="Write this rank's result (JSON) here."),
    labels_only: bool = typer.Option(False, help="Argmax on shares: rank 1 learns labels only."),
) -> None:
    """Run one rank of a private inference over TCP (torch.distributed, gloo)."""
    import time

    import torch

    from veil.core.errors import ConfigError
    from veil.encrypted.mpc.comm import GlooComm, Traffic
    from veil.encrypted.mpc.model import run_party

    shared = images = labels = None
    if rank == 0:
        if model is None:
            raise ConfigError("rank 0 holds the model: pass --model")
        shared, _ = _shared_model(model)
    if rank == 1:
        if data is None:
            raise ConfigError("rank 1 holds the input: pass --data")
        images, labels = _images(data, limit)
    torch.set_num_threads(1)  # one core per rank: ranks on one machine do not oversubscribe
    comm = GlooComm(rank, 2, master)
    try:
        n = torch.tensor([len(images) if rank == 1 else 0])
        comm.dist.broadcast(n, src=1)
        times = []
        for _ in range(max(1, repeat)):
            comm.traffic = Traffic()  # count one inference
            start = time.perf_counter()
            out = run_party(comm, shared, images, int(n.item()), labels_only=labels_only)
            times.append(time.perf_counter() - start)
        out["times"] = times
        out["seconds"] = sorted(times[1:])[len(times[1:]) // 2] if len(times) > 1 else times[0]
    finally:
        comm.close()
    if "logits" in out or "labels" in out:
        predicted = out["logits"].argmax(1) if "logits" in out else out["labels"]
        out["accuracy"] = float((predicted == labels).mean())
        out.update({k: out[k].tolist() for k in ("logits", "labels") if k in out})
    if result:
        result.write_text(json.dumps(out))


@app.command("infer")
def infer(
    model: Path = typer.Argument(..., help="A .veil model (Linear/Conv/AvgPool, ReLU or x²)."),
    data: str = typer.Option(None, "--data", "-d", help="Data set (default: the model's)."),
    limit: int = typer.Option(100, help="Test images to classify."),
    engine: str = typer.Option("processes", help="processes (3 over TCP) or threads."),
    ledger: Path = typer.Option(None, help="Write the input/output guarantees here."),
    labels_only: bool = typer.Option(
        False, help="Compute the argmax on shares: the input owner learns labels, not logits."
    ),
) -> None:
    """Classify test images privately; compare with the plaintext model."""
    import numpy as np

    from veil.core.errors import ConfigError
    from veil.core.guarantees import Ledger
    from veil.encrypted.mpc.launch import run_processes
    from veil.encrypted.mpc.model import guarantees, infer_threads

    shared, loaded = _shared_model(model)
    name = loaded.data_name(data, hint="pass --data")
    x, y = _images(name, limit)
    if engine == "threads":
        import time

        start = time.perf_counter()
        out = infer_threads(shared, x, labels_only=labels_only)
        out["seconds"] = time.perf_counter() - start
    elif engine == "processes":
        out = run_processes(model, name, limit, labels_only=labels_only)
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
    }
    if logits is not None:
        numbers["max_abs_error"] = float(np.abs(logits - plain).max())
    typer.echo(
        f"{len(x)} {name} images classified on shares ({engine}): accuracy "
        f"{numbers['accuracy_mpc']:.4f} (plaintext {numbers['accuracy_plain']:.4f}), argmax "
        f"agreement {numbers['argmax_agreement']:.4f}, {out['seconds']:.2f} s"
    )
    if ledger:
        run = Ledger.start(f"mpc infer {name}")
        for g in guarantees(numbers, step="mpc-infer", labels_only=labels_only):
            run.add(g)
        run.finish()
        run.save(ledger)
