"""``veil audit``: attack a trained model to measure what its training data leaks."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Audits: membership inference against a model file.", no_args_is_help=True)


@app.command("membership")
def membership(
    model: Path = typer.Argument(..., help="A .veil model file."),
    data: str = typer.Option(None, "--data", "-d", help="Its training data set (default: header)."),
    attack: str = typer.Option("lira", help="lira, lira-offline, shadow or threshold."),
    shadows: int = typer.Option(16, help="LiRA reference models."),
    limit: int = typer.Option(1000, help="Members and non-members drawn from each split."),
    epochs: int = typer.Option(10, help="Reference models' training epochs (the recipe)."),
    lr: float = typer.Option(0.05, help="Reference models' learning rate."),
    batch_size: int = typer.Option(64, help="Reference models' batch size."),
    augment: int = typer.Option(0, help="LiRA: shifted queries per example (images, 0-8)."),
    workers: int = typer.Option(1, help="Reference models trained at once (memory allowing)."),
    epsilon: float = typer.Option(None, help="Claimed ε to check the ROC against."),
    delta: float = typer.Option(1e-5, help="Claimed δ."),
    ledger: Path = typer.Option(None, help="Ledger to write (default: MODEL.audit.json)."),
    force: bool = typer.Option(False, "--force", help="Overwrite the ledger."),
) -> None:
    """Membership inference: members are the data set's training split, non-members its test
    split. Threat model: a black-box attacker with confidences who knows the recipe."""
    from veil.audit.membership import audit_saved_model
    from veil.core.errors import refuse_overwrite
    from veil.core.guarantees import Ledger

    out = ledger or model.with_suffix(".audit.json")
    refuse_overwrite(out, force)
    recipe = {"epochs": epochs, "lr": lr, "batch_size": batch_size}
    result, entry = audit_saved_model(
        model,
        data,
        attack,
        shadows,
        limit,
        recipe,
        epsilon,
        delta,
        augment=augment,
        workers=workers,
    )
    run = Ledger.start(f"membership audit of {model.name}", command="veil audit membership")
    run.add(entry)
    run.finish(status="ok")
    run.save(out)
    typer.echo(
        f"{attack}: AUC {result.auc:.3f}, TPR {result.tpr_at['0.001']:.2%} at 0.1% FPR, "
        f"{result.tpr_at['0.01']:.2%} at 1%; advantage {result.advantage:.3f}; wrote {out}"
    )
