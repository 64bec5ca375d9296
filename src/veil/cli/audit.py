"""``veil audit``: attack a trained model to measure what its training data leaks."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    help="Audits: membership inference, gradient inversion and backdoors.", no_args_is_help=True
)


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


@app.command("gradient-inversion")
def gradient_inversion(
    model: Path = typer.Argument(..., help="A .veil model file (the weights the server knows)."),
    data: str = typer.Option(None, "--data", "-d", help="Data set (default: the model's)."),
    setting: str = typer.Option("full", help="full, dssgd or dp: what the participant shares."),
    theta_up: float = typer.Option(0.1, help="dssgd: fraction of coordinates uploaded."),
    gamma: float = typer.Option(1e-2, help="dssgd: bound on uploaded values."),
    epsilon: float = typer.Option(None, help="dp: ε of the one DP-SGD step."),
    images: int = typer.Option(8, help="Training examples attacked (one update each)."),
    steps: int = typer.Option(300, help="Optimisation steps per reconstruction."),
    ledger: Path = typer.Option(None, help="Ledger to write (default: MODEL.inversion.json)."),
    force: bool = typer.Option(False, "--force", help="Overwrite the ledger."),
) -> None:
    """Can a curious server rebuild training images from one shared update each?"""
    import torch

    from veil.audit.reconstruction import audit, guarantee
    from veil.core import data as data_mod
    from veil.core.data import sample_indices
    from veil.core.errors import refuse_overwrite
    from veil.core.guarantees import Ledger
    from veil.core.io import load_model

    out = ledger or model.with_suffix(".inversion.json")
    refuse_overwrite(out, force)
    loaded = load_model(model)
    train = data_mod.load(loaded.data_name(data, hint="pass --data"), "train")
    x, y = train.batch(torch.as_tensor(sample_indices(len(train), images, seed=0)))
    update = {"theta_up": theta_up, "gamma": gamma} if setting == "dssgd" else {}
    if setting == "dp":
        update["epsilon"] = epsilon
    result = audit(loaded.model, x, y, setting, steps, **update)
    run = Ledger.start(
        f"gradient inversion of {model.name}", command="veil audit gradient-inversion"
    )
    run.add(guarantee(result, setting, update))
    run.finish(status="ok")
    run.save(out)
    typer.echo(
        f"{setting}: {result['recovered']}/{result['images']} images recovered above "
        f"{result['threshold_db']:.0f} dB, mean PSNR {result['mean_psnr']:.1f} dB; wrote {out}"
    )


backdoor_app = typer.Typer(
    help="Backdoors: plant one (to test a training pipeline) and detect triggered inputs.",
    no_args_is_help=True,
)
app.add_typer(backdoor_app, name="backdoor")


@backdoor_app.command("attack")
def backdoor_attack(
    data: str = typer.Option(..., "--data", "-d", help="Data set name."),
    model: str = typer.Option("lenet", "--model", "-m", help="Network name."),
    method: str = typer.Option("random", help="badnets, random, ban or cban."),
    targets: str = typer.Option("0", help="Target labels, comma-separated (several: cban/random)."),
    rate: float = typer.Option(0.1, help="Share of each batch poisoned."),
    size: int = typer.Option(4, help="Trigger side in pixels."),
    epochs: int = typer.Option(3, help="Training epochs."),
    lr: float = typer.Option(1e-3, help="Learning rate."),
    optimizer: str = typer.Option("adam", help="sgd or adam."),
    seed: int = typer.Option(0, help="Seed."),
    limit: int = typer.Option(None, help="Train on N random examples only."),
    out: Path = typer.Option(Path("backdoored.veil"), "--out", "-o", help="Model file to write."),
    ledger: Path = typer.Option(None, help="Ledger to write (default: OUT with .ledger.json)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files."),
) -> None:
    """Train a backdoored model (for testing defenses and pipelines): records its clean
    accuracy and attack success rate in the ledger."""
    from rich.console import Console

    from veil.audit import backdoor
    from veil.cli.train import check_outputs, save_outputs
    from veil.core.errors import ConfigError
    from veil.core.guarantees import Record
    from veil.core.train import prepare

    ledger_path = check_outputs(out, ledger, force)
    try:
        labels = tuple(int(t) for t in targets.split(","))
    except ValueError as e:
        raise ConfigError(f"--targets takes labels like 0,1; got {targets!r}") from e
    cfg = backdoor.AttackConfig(
        method=method,
        targets=labels,
        rate=rate,
        size=size,
        epochs=epochs,
        lr=lr,
        optimizer=optimizer,
        seed=seed,
    )
    p = prepare(data, model, limit=limit, seed=seed)
    result = backdoor.train_backdoored(p.model, p.train, p.test, cfg)
    record = Record(
        "backdoor-attack",
        "backdoor-attack",
        metrics={"test_accuracy": result.clean_accuracy, "attack_success": result.attack_success},
        details={
            "config": {**cfg.__dict__, "targets": list(labels)},
            "per_target": {str(k): v for k, v in result.per_target.items()},
            "seconds": round(result.seconds, 2),
        },
    )
    save_outputs(out, ledger_path, p, record, f"backdoor ({method}) {model} on {data}")
    Console(stderr=True).print(
        f"clean accuracy {result.clean_accuracy:.4f}, attack success {result.attack_success:.4f} "
        f"({method}, targets {list(labels)}); wrote {out} and {ledger_path}"
    )


@backdoor_app.command("scan")
def backdoor_scan(
    model: Path = typer.Argument(..., help="A .veil model file."),
    data: str = typer.Option(
        None, "--data", "-d", help="Clean data to scan with (default: header)."
    ),
    limit: int = typer.Option(2000, help="Clean examples used (from the test split)."),
    steps: int = typer.Option(300, help="Optimisation steps per label."),
    ledger: Path = typer.Option(None, help="Ledger to write (default: MODEL.backdoor.json)."),
    force: bool = typer.Option(False, "--force", help="Overwrite the ledger."),
) -> None:
    """Scan a model for a backdoor with Neural Cleanse: reverse-engineer a trigger per label
    and flag labels whose trigger is anomalously small (MAD anomaly index > 2)."""
    from rich.console import Console

    from veil.audit import backdoor
    from veil.core import data as data_mod
    from veil.core.errors import refuse_overwrite
    from veil.core.guarantees import Guarantee, Ledger
    from veil.core.io import load_model

    out = ledger or model.with_suffix(".backdoor.json")
    refuse_overwrite(out, force)
    loaded = load_model(model)
    name = loaded.data_name(data, hint="pass --data")
    clean = data_mod.load(name, "test")
    clean = clean.subset(data_mod.sample_indices(len(clean), min(limit, len(clean)), 0))
    found = backdoor.neural_cleanse(loaded.model, clean, backdoor.CleanseConfig(steps=steps))
    entry = Guarantee(
        guarantee="audit",
        tests="model",
        mechanism="Neural Cleanse",
        claim=(
            f"labels {found.flagged} look backdoored"
            if found.flagged
            else "no label has an anomalously small trigger"
        ),
        threat_model="an attacker who poisoned training with a small patch trigger; the "
        "defender holds clean data; large or input-specific triggers can evade this scan",
        numbers={"labels_flagged": len(found.flagged), "max_anomaly": max(found.anomaly)},
        evidence={
            "mask_l1_per_label": found.norms,
            "anomaly_index": found.anomaly,
            "triggers": {  # mask x pattern, first channel, of each flagged label
                str(t): (found.masks[t][0] * found.patterns[t][0]).round(decimals=3).tolist()
                for t in found.flagged
            },
        },
        status="violated" if found.flagged else "supported",
        step="backdoor-scan",
    )
    run = Ledger.start(f"backdoor scan of {model.name}")
    run.add(entry)
    run.finish(status="ok")
    run.save(out)
    Console(stderr=True).print(
        f"{entry.claim}; anomaly indices {[round(a, 2) for a in found.anomaly]}; wrote {out}"
    )


@backdoor_app.command("strip")
def backdoor_strip(
    model: Path = typer.Argument(..., help="A .veil model file."),
    inputs: Path = typer.Option(..., help="Images to check: .npz with an array 'x'."),
    data: str = typer.Option(None, "--data", "-d", help="Clean data set (default: header)."),
    frr: float = typer.Option(0.01, help="False-rejection rate on clean inputs."),
    copies: int = typer.Option(32, help="Blended copies per input."),
    out: Path = typer.Option(None, help="JSON of scores and flags (default: INPUTS.strip.json)."),
    force: bool = typer.Option(False, "--force", help="Overwrite the JSON."),
) -> None:
    """STRIP: flag the inputs that look triggered (their predictions survive blending with
    clean images); the threshold comes from the clean test split at --frr."""
    import torch

    from veil.audit import backdoor
    from veil.audit.backdoor.strip import load_inputs
    from veil.core import data as data_mod
    from veil.core.errors import refuse_overwrite
    from veil.core.io import load_model, write_json

    target = out or inputs.with_suffix(".strip.json")
    refuse_overwrite(target, force)
    loaded = load_model(model)
    name = loaded.data_name(data, hint="pass --data")
    clean_set = data_mod.load(name, "test")
    suspicious = load_inputs(inputs, clean_set.input_shape)
    picked = data_mod.sample_indices(len(clean_set), min(500, len(clean_set)), 0)
    clean = clean_set.batch(torch.as_tensor(picked))[0]
    found = backdoor.strip(loaded.model, suspicious, clean, clean_set, frr=frr, copies=copies)
    write_json(
        target,
        {
            "threshold": found.threshold,
            "false_rejection_on_clean": found.false_rejection,
            "flagged": found.flagged.tolist(),
            "scores": [round(float(s), 6) for s in found.scores],
        },
    )
    typer.echo(
        f"{int(found.flagged.sum())} of {len(found.flagged)} inputs flagged as triggered "
        f"(threshold {found.threshold:.4f}, clean false rejection {found.false_rejection:.3f}); "
        f"wrote {target}"
    )
