"""``veil he``: encrypted inference with CKKS (input and output privacy)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import typer

from veil.cli.train import check_outputs, parse_options, save_outputs
from veil.core.net import PORT_FILE_HELP

app = typer.Typer(
    help="Homomorphic encryption (input and output privacy): the server classifies CKKS "
    "ciphertexts and only the client can decrypt the result. Threat model: a semi-honest "
    "server; the client keeps the secret key.",
    no_args_is_help=True,
)
TOKEN_ENV = "VEIL_HE_TOKEN"


@app.command("fit")
def fit(
    data: str = typer.Option("mnist", "--data", "-d", help="Data set name."),
    model: str = typer.Option("he-cnn", "--model", "-m", help="he-mlp or he-cnn (x² activations)."),
    option: list[str] = typer.Option([], "--option", "-O", help="Model option KEY=VALUE."),
    epochs: int = typer.Option(5, help="Passes over the training set."),
    batch_size: int = typer.Option(64, help="Examples per step."),
    lr: float = typer.Option(
        0.001, help="Learning rate (Adam: x² nets diverge under large SGD steps)."
    ),
    seed: int = typer.Option(0, help="Seed."),
    limit: int = typer.Option(None, help="Train on N random examples only."),
    start: Path = typer.Option(
        None, "--from", help="Fine-tune this model file (e.g. an mlp with ReLU) with x² instead."
    ),
    out: Path = typer.Option(Path("he-model.veil"), "--out", "-o", help="Model file to write."),
    ledger: Path = typer.Option(None, help="Ledger (default: OUT with .ledger.json)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files."),
) -> None:
    """Train an HE-friendly network (polynomial activations) and check that it compiles."""
    from rich.console import Console

    from veil.core.train import train_named
    from veil.encrypted.he import EncryptedModel, compile_model

    ledger_path = check_outputs(out, ledger, force)
    fit_options = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": "adam"}
    if start is not None:
        trained = _fine_tune(start, limit, seed, fit_options)
        model, data = trained.spec.name, trained.train.name
    else:
        trained = train_named(
            data, model, model_options=parse_options(option), limit=limit, seed=seed, **fit_options
        )
    served = EncryptedModel(compile_model(trained.model, trained.spec.input_shape))
    save_outputs(out, ledger_path, trained, trained.record("he-fit"), f"he fit {model} on {data}")
    p = served.params
    Console(stderr=True, soft_wrap=True).print(
        f"{model} on {data}: test accuracy {trained.result.final['accuracy']:.4f}; "
        f"compiles to depth {served.model.depth} (CKKS N={p.n}, modulus {list(p.bits)}); "
        f"wrote {out}"
    )


def _fine_tune(path: Path, limit: int | None, seed: int, fit_options: dict):
    """A saved model with its activation replaced by x², fine-tuned on its own data set."""
    from veil.core.io import load_model
    from veil.core.train import Trained, fit, prepare
    from veil.encrypted.he.compiler import with_square_activations

    loaded = load_model(path)
    spec, net = with_square_activations(loaded.spec, loaded.model)
    prepared = prepare(loaded.data_name(), spec.name, model_options=spec.options, limit=limit)
    result = fit(net, prepared.train, eval_data=prepared.test, seed=seed, **fit_options)
    subset = {**prepared.subset, "fine_tuned_from": str(path)}
    return Trained(net, spec, prepared.train, prepared.test, subset, result)


def _served(path: Path, limit: int = 256):
    """A model file compiled for serving; its training data sizes the headroom."""
    from veil.core.errors import VeilError
    from veil.core.io import load_model
    from veil.encrypted.he import EncryptedModel, compile_model

    loaded = load_model(path)
    shape = loaded.spec.input_shape
    try:
        sample, _ = _images(loaded.data_name(), "train", limit)
    except VeilError:  # the training data is not here: default headroom
        sample = None
    return EncryptedModel(compile_model(loaded.model, shape), sample=sample), loaded


def _images(name: str, split: str, limit: int | None, seed: int = 0):
    from veil.core.data import sample_arrays

    return sample_arrays(name, split, limit, seed)


def _token(token_file: Path | None, create: bool) -> str:
    from veil.core.errors import VeilError

    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    if token_file is None:
        raise VeilError(f"give --token-file or set {TOKEN_ENV}")
    if token_file.exists():
        return token_file.read_text().strip()
    if not create:
        raise VeilError(f"token file {token_file} not found; the server writes it when it starts")
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32))
    return token_file.read_text().strip()


@app.command("serve")
def serve(
    model: Path = typer.Argument(..., help="A .veil model file with HE-friendly layers."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8765, help="Port (0: one the system chooses)."),
    port_file: Path = typer.Option(None, help=PORT_FILE_HELP),
    token_file: Path = typer.Option(
        None, help=f"Shared token (made, mode 0600, if missing); or set {TOKEN_ENV}."
    ),
    max_mb: int = typer.Option(2048, help="Largest request body, MiB."),
) -> None:
    """Serve encrypted inference over HTTP; the server never holds the secret key."""
    from veil.core.net import listening, serve
    from veil.encrypted.he.service import create_app

    served, _ = _served(model)
    token = _token(token_file, create=True)
    p = served.params
    sock = listening(host, port, port_file)
    port = sock.getsockname()[1]
    typer.echo(
        f"serving {model} on http://{host}:{port} (CKKS N={p.n}, depth {served.model.depth}); "
        f"clients need the token in {token_file or TOKEN_ENV}",
        err=True,
    )
    serve(create_app(served, token, max_mb), sock)


@app.command("infer")
def infer(
    server: str = typer.Option(..., "--server", help="Service URL, e.g. http://127.0.0.1:8765."),
    data: str = typer.Option("mnist", "--data", "-d", help="Data set to classify."),
    split: str = typer.Option("test", help="train or test."),
    limit: int = typer.Option(100, help="Images to classify (random, seeded)."),
    packing: str = typer.Option("auto", help="auto, batch (throughput) or vector (latency)."),
    token_file: Path = typer.Option(None, help=f"Shared token file; or set {TOKEN_ENV}."),
    ledger: Path = typer.Option(None, help="Write the input/output guarantees here."),
    seed: int = typer.Option(0, help="Seed for picking images."),
) -> None:
    """Encrypt images here, have the service classify them, decrypt and score here."""
    import time

    from veil.core.guarantees import Ledger
    from veil.encrypted.he.inference import guarantees
    from veil.encrypted.he.service import RemoteClient

    x, y = _images(data, split, limit, seed)
    remote = RemoteClient(server, _token(token_file, create=False))
    start = time.perf_counter()
    try:
        step = 1 if packing == "vector" else remote.client.params.slots
        logits = [remote.infer(x[i : i + step], packing) for i in range(0, len(x), step)]
    finally:
        remote.close()
    seconds = time.perf_counter() - start
    import numpy as np

    accuracy = float((np.concatenate(logits).argmax(1) == y).mean())
    t = remote.client.timing
    numbers = {
        "images": len(x),
        "accuracy_encrypted": accuracy,
        "seconds": round(seconds, 3),
        "bytes_sent": t.bytes_sent,
        "bytes_received": t.bytes_received,
    }
    typer.echo(
        f"{len(x)} {data}/{split} images classified encrypted: accuracy {accuracy:.4f}, "
        f"{seconds:.2f} s ({1000 * seconds / len(x):.1f} ms/image), "
        f"sent {t.bytes_sent / 1e6:.1f} MB, received {t.bytes_received / 1e6:.1f} MB"
    )
    if ledger:
        run = Ledger.start(f"he infer {data}")
        for g in guarantees(remote.client.spec, numbers, step="he-infer"):
            run.add(g)
        run.finish()
        run.save(ledger)


@app.command("check")
def check(
    model: Path = typer.Argument(..., help="A .veil model file."),
    limit: int = typer.Option(32, help="Test images to run encrypted, client and server here."),
    packing: str = typer.Option("auto", help="auto, batch or vector."),
    ledger: Path = typer.Option(None, help="Write the guarantees with the measured error here."),
) -> None:
    """Compile a model, run it encrypted in-process on test images, compare with plaintext."""
    import numpy as np

    from veil.core.guarantees import Ledger
    from veil.encrypted.he import torch_logits
    from veil.encrypted.he.inference import guarantees, run_local

    served, loaded = _served(model)
    x, _ = _images(loaded.data_name(), "test", limit)
    logits, client, _ = run_local(served, x, packing)
    plain = torch_logits(loaded.model, x)
    numbers = {
        "max_abs_error": float(np.abs(logits - plain).max()),
        "argmax_agreement": float((logits.argmax(1) == plain.argmax(1)).mean()),
        "images": len(x),
    }
    for line in served.model.describe():
        typer.echo(f"  {line}")
    p = served.params
    typer.echo(
        f"CKKS N={p.n}, modulus {list(p.bits)} ({p.total_bits} bits, 128-bit secure), "
        f"depth {served.model.depth}: max |error| {numbers['max_abs_error']:.2e}, "
        f"argmax agreement {numbers['argmax_agreement']:.4f} on {len(x)} images"
    )
    if ledger:
        run = Ledger.start(f"he check {model}")
        for g in guarantees(served.spec(), numbers, step="he-check"):
            run.add(g)
        run.finish()
        run.save(ledger)
