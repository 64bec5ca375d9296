"""``veil model``: inspect and evaluate veil model files."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Model files: show their header, evaluate them.", no_args_is_help=True)


@app.command("info")
def info(path: Path = typer.Argument(..., help="A .veil model file.")) -> None:
    """Print a model file's header: architecture, input shape, classes, veil version."""
    import json

    from veil.core.io import read_header

    typer.echo(json.dumps(read_header(path), indent=2))


@app.command("evaluate")
def evaluate(
    path: Path = typer.Argument(..., help="A .veil model file."),
    data: str = typer.Option(None, "--data", "-d", help="Data set (default: the training set's)."),
    split: str = typer.Option("test", help="train or test."),
) -> None:
    """Accuracy and loss of a saved model on a data set split."""
    from veil.core import data as data_mod
    from veil.core.errors import DataError
    from veil.core.io import load_model
    from veil.core.train import evaluate as evaluate_model

    loaded = load_model(path)
    name = data or loaded.extra.get("data")
    if not name:
        raise DataError(f"{path} does not say which data it was trained on; pass --data")
    metrics = evaluate_model(loaded.model, data_mod.load(name, split))
    typer.echo(
        f"{path} on {name}/{split}: accuracy {metrics['accuracy']:.4f}, "
        f"loss {metrics['loss']:.4f}, n {metrics['n']}"
    )
