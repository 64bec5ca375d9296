"""``veil dp``: DP-SGD training, and ε/σ planning with the PLD (or RDP) accountant."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from veil.cli.train import check_outputs, parse_options, save_outputs

app = typer.Typer(
    help="Differential privacy (training-data privacy): DP-SGD training and budget planning. "
    "Threat model: the adversary sees every intermediate model and may choose all other "
    "records; the training code and its randomness are trusted and secret.",
    no_args_is_help=True,
)


# The planning options that `epsilon` and `calibrate` share.
Rate = Annotated[float | None, typer.Option(help="Poisson sampling rate (batch size / n).")]
Steps = Annotated[int | None, typer.Option(help="Number of steps.")]
BatchSize = Annotated[int | None, typer.Option(help="Expected batch size (with --n).")]
Size = Annotated[int | None, typer.Option(help="Training set size (with --batch-size).")]
Epochs = Annotated[float | None, typer.Option(help="Epochs (instead of --steps).")]
Delta = Annotated[float, typer.Option(help="δ.")]
AccountantName = Annotated[str, typer.Option(help="pld (tight) or rdp (looser cross-check).")]


def _rate_and_steps(q, steps, batch_size, n, epochs) -> tuple[float, int]:
    from veil.core.errors import ConfigError

    if q is None:
        if batch_size is None or n is None:
            raise ConfigError("give --q, or --batch-size and --n")
        q = batch_size / n
    if not 0 < q <= 1:
        raise ConfigError(f"the sampling rate q must be in (0, 1], got {q:g}")
    if steps is None:
        if epochs is None:
            raise ConfigError("give --steps, or --epochs")
        steps = max(1, round(epochs / q))
    return q, steps


@app.command("epsilon")
def epsilon(
    sigma: float = typer.Option(..., help="Noise multiplier (noise std / clip norm)."),
    q: Rate = None,
    steps: Steps = None,
    batch_size: BatchSize = None,
    n: Size = None,
    epochs: Epochs = None,
    delta: Delta = 1e-5,
    accountant: AccountantName = "pld",
) -> None:
    """ε of a DP-SGD run with noise multiplier SIGMA."""
    from veil.dp.accounting import epsilon as eps_of

    q, steps = _rate_and_steps(q, steps, batch_size, n, epochs)
    value = eps_of(sigma, q, steps, delta, accountant)
    typer.echo(
        f"epsilon = {value:.4f} at delta = {delta:g} (sigma {sigma:g}, q {q:.5g}, "
        f"{steps} steps, {accountant.upper()})"
    )


@app.command("calibrate")
def calibrate(
    epsilon: float = typer.Option(..., help="Target ε."),
    q: Rate = None,
    steps: Steps = None,
    batch_size: BatchSize = None,
    n: Size = None,
    epochs: Epochs = None,
    delta: Delta = 1e-5,
    accountant: AccountantName = "pld",
) -> None:
    """The smallest noise multiplier that keeps a DP-SGD run within EPSILON."""
    from veil.dp.accounting import calibrate_sigma

    q, steps = _rate_and_steps(q, steps, batch_size, n, epochs)
    sigma = calibrate_sigma(epsilon, q, steps, delta, accountant)
    typer.echo(
        f"sigma = {sigma:.4f} for epsilon <= {epsilon:g} at delta = {delta:g} "
        f"(q {q:.5g}, {steps} steps, {accountant.upper()})"
    )


@app.command("train")
def train(
    data: str = typer.Option(..., "--data", "-d", help="Data set name."),
    model: str = typer.Option("mnist-cnn", "--model", "-m", help="Network name."),
    option: list[str] = typer.Option([], "--option", "-O", help="Model option KEY=VALUE."),
    epsilon: float = typer.Option(None, help="Target ε (σ is calibrated to it)."),
    delta: float = typer.Option(1e-5, help="δ; keep it well below 1/n."),
    sigma: float = typer.Option(None, help="Noise multiplier instead of a target ε."),
    clip: float = typer.Option(1.0, help="Per-sample gradient norm bound C."),
    epochs: float = typer.Option(10, help="Epochs (expected passes over the data)."),
    batch_size: int = typer.Option(256, help="Expected (logical) batch size."),
    physical_batch: int = typer.Option(512, help="Most examples per forward pass (memory)."),
    lr: float = typer.Option(0.5, help="Learning rate."),
    optimizer: str = typer.Option("sgd", help="sgd or adam."),
    momentum: float = typer.Option(0.9, help="SGD momentum."),
    engine: str = typer.Option("auto", help="auto, layers, vmap or opacus."),
    per_layer: bool = typer.Option(False, help="Clip each parameter tensor separately."),
    accountant: str = typer.Option("pld", help="pld (tight) or rdp."),
    ema: float = typer.Option(None, help="Release an average of the weights (decay, e.g. 0.99)."),
    noise_seed: int = typer.Option(None, help="Fixed noise seed (experiments only)."),
    seed: int = typer.Option(0, help="Seed for the initial weights."),
    limit: int = typer.Option(None, help="Train on N random examples only."),
    out: Path = typer.Option(Path("model.veil"), "--out", "-o", help="Model file to write."),
    ledger: Path = typer.Option(None, help="Ledger to write (default: OUT with .ledger.json)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files."),
) -> None:
    """Train with DP-SGD; the model file's ledger holds its (ε, δ) guarantee."""
    from rich.console import Console

    from veil import dp
    from veil.core.train import prepare, training_record

    if epsilon is None and sigma is None:
        epsilon = 3.0
    ledger_path = check_outputs(out, ledger, force)
    p = prepare(data, model, model_options=parse_options(option), limit=limit, seed=seed)
    cfg = dp.DPConfig(
        epsilon=None if sigma is not None else epsilon,
        delta=delta,
        sigma=sigma,
        clip=clip,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        momentum=momentum,
        physical_batch=physical_batch,
        engine=engine,
        per_layer=per_layer,
        accountant=accountant,
        ema=ema,
        noise_seed=noise_seed,
        seed=seed,
    )
    result = dp.train(p.model, p.train, cfg, eval_data=p.test, step="dp-train")
    record = training_record(
        "dp-train",
        final=result.final,
        curves=result.curves(),
        details=p.details(result.seconds, "cpu"),
    )
    save_outputs(out, ledger_path, p, record, f"DP-SGD {model} on {data}", result.guarantee)
    Console(stderr=True, soft_wrap=True).print(
        f"{result.guarantee.claim}; test accuracy {result.final['accuracy']:.4f} "
        f"({result.seconds:.1f} s); wrote {out} and {ledger_path}"
    )
