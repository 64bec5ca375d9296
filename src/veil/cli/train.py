"""``veil train``: plain (non-private) training; saves a model file and a ledger."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer


def parse_options(pairs: list[str]) -> dict:
    """``["hidden=[64]", "activation=tanh"]`` to a dict; values are JSON, else plain strings."""
    from veil.core.errors import ConfigError

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"bad option {pair!r}: write KEY=VALUE, e.g. hidden=[64,32]")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def check_outputs(out: Path, ledger: Path | None, force: bool) -> Path:
    """The ledger path (default: next to the model); refuse to overwrite either unless forced."""
    from veil.core.errors import refuse_overwrite

    ledger_path = ledger or out.with_suffix(".ledger.json")
    for path in (out, ledger_path):
        refuse_overwrite(path, force)
    return ledger_path


def save_outputs(out: Path, ledger_path: Path, prepared, record, title: str, guarantee=None):
    """Write the model file and a ledger holding the training record (and guarantee)."""
    from veil.core.io import save_trained_files

    command = " ".join(["veil", *sys.argv[1:]])
    save_trained_files(out, ledger_path, prepared, record, title, guarantee, command=command)


def train(
    data: str = typer.Option(..., "--data", "-d", help="Data set name (see `veil data list`)."),
    model: str = typer.Option("mlp", "--model", "-m", help="mlp, mnist-cnn, cifar-cnn, lenet."),
    option: list[str] = typer.Option([], "--option", "-O", help="Model option KEY=VALUE."),
    epochs: int = typer.Option(10, help="Passes over the training set."),
    batch_size: int = typer.Option(64, help="Examples per step."),
    lr: float = typer.Option(0.05, help="Learning rate."),
    optimizer: str = typer.Option("sgd", help="sgd (momentum 0.9) or adam."),
    seed: int = typer.Option(0, help="Seed for weights and shuffling."),
    limit: int = typer.Option(None, help="Train on N random examples only."),
    out: Path = typer.Option(Path("model.veil"), "--out", "-o", help="Model file to write."),
    ledger: Path = typer.Option(None, help="Ledger to write (default: OUT with .ledger.json)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files."),
) -> None:
    """Train a network without privacy protection (a baseline); no guarantee is claimed."""
    from rich.console import Console

    from veil.core.train import train_named

    ledger_path = check_outputs(out, ledger, force)
    trained = train_named(
        data,
        model,
        model_options=parse_options(option),
        limit=limit,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        seed=seed,
    )
    save_outputs(out, ledger_path, trained, trained.record("train"), f"train {model} on {data}")
    final = trained.result.final
    Console(stderr=True, soft_wrap=True).print(
        f"{model} on {data}: test accuracy {final['accuracy']:.4f}, loss {final['loss']:.4f} "
        f"({trained.result.seconds:.1f} s); wrote {out} and {ledger_path}"
    )
