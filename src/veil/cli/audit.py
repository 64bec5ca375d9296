"""``veil audit``: attack a trained model to measure what its training data leaks."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    help="Audits: membership inference, gradient and model inversion, backdoors.",
    no_args_is_help=True,
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
    _write_audit(out, f"membership audit of {model.name}", "veil audit membership", entry)
    typer.echo(
        f"{attack}: AUC {result.auc:.3f}, TPR {result.tpr_at['0.001']:.2%} at 0.1% FPR, "
        f"{result.tpr_at['0.01']:.2%} at 1%; advantage {result.advantage:.3f}; wrote {out}"
    )


def _write_audit(path: Path, title: str, command: str, entry) -> None:
    """One audit entry in a ledger of its own."""
    from veil.core.guarantees import Ledger

    run = Ledger.start(title, command=command)
    run.add(entry)
    run.finish(status="ok")
    run.save(path)


def _attacked_model(model: str | None, data: str | None):
    """A saved model (a path) or an untrained network by name; the default, an untrained
    MLP 784-256-10 (tanh), stands for the first round of a collaborative run. Returns the
    network, the training split it is attacked with and where its ledger goes by default."""
    import torch

    from veil.core import data as data_mod
    from veil.core import models
    from veil.core.errors import ConfigError
    from veil.core.io import load_model

    if model and Path(model).exists():
        loaded = load_model(model)
        train = data_mod.load(loaded.data_name(data, hint="pass --data"), "train")
        return loaded.model, train, Path(model)
    if not data:
        raise ConfigError("--data is needed when --model is not a model file")
    if model is not None and model not in models.names():
        raise ConfigError(f"--model {model!r} is neither a file nor one of {models.names()}")
    train = data_mod.load(data, "train")
    torch.manual_seed(0)
    if model is None:
        net = models.build("mlp", train.input_shape, train.num_classes, hidden=[256],
                           activation="tanh")  # fmt: skip
        return net, train, Path("mlp")
    return models.build(model, train.input_shape, train.num_classes), train, Path(model)


@app.command("inversion")
def inversion(
    model: str = typer.Option(None, "--model", "-m", help="A .veil file or a network name."),
    data: str = typer.Option(None, "--data", "-d", help="Data set (default: the model's)."),
    setting: str = typer.Option("full", help="full, dssgd, fedavg or dp: what is shared."),
    theta_up: float = typer.Option(0.1, help="dssgd: fraction of coordinates uploaded."),
    gamma: float = typer.Option(1e-2, help="dssgd: bound on uploaded values."),
    local_steps: int = typer.Option(5, help="fedavg: local SGD steps before the update."),
    lr: float = typer.Option(0.1, help="fedavg: local learning rate."),
    epsilon: float = typer.Option(None, help="dp: ε of the one DP-SGD step."),
    batch: int = typer.Option(1, help="Examples per shared update (1 to 8)."),
    images: int = typer.Option(8, help="Training examples attacked in all."),
    steps: int = typer.Option(300, help="Optimisation steps per reconstruction."),
    ledger: Path = typer.Option(None, help="Ledger (default: MODEL.inversion.json)."),
    force: bool = typer.Option(False, "--force", help="Overwrite the ledger."),
) -> None:
    """Gradient inversion: can a curious server rebuild training images from the updates
    participants share? Writes an audit entry with the best reconstructions."""
    import torch

    from veil.audit.reconstruction import audit, guarantee
    from veil.core.data import sample_indices
    from veil.core.errors import refuse_overwrite

    net, train, where = _attacked_model(model, data)
    out = ledger or where.with_suffix(".inversion.json")
    refuse_overwrite(out, force)
    x, y = train.batch(torch.as_tensor(sample_indices(len(train), images, seed=0)))
    update = {
        "dssgd": {"theta_up": theta_up, "gamma": gamma},
        "fedavg": {"local_steps": local_steps, "lr": lr},
        "dp": {"epsilon": epsilon},
    }.get(setting, {})
    result = audit(net, x, y, setting, steps, batch=batch, **update)
    title = f"gradient inversion of {where.name} on {train.name}"
    _write_audit(out, title, "veil audit inversion", guarantee(result, setting, update))
    typer.echo(
        f"{setting}, batch {batch}: {result['recovered']}/{result['images']} images recovered "
        f"above {result['threshold_db']:.0f} dB, mean PSNR {result['mean_psnr']:.1f} dB; "
        f"labels {result['label_recovery_accuracy']:.0%}; wrote {out}"
    )


@app.command("model-inversion")
def model_inversion(
    model: Path = typer.Argument(..., help="A released .veil model file."),
    data: str = typer.Option(None, "--data", "-d", help="Its training data (for scoring)."),
    classes: str = typer.Option("all", "--class", help="Classes to invert: 3, 0,1,2 or all."),
    black_box: bool = typer.Option(False, "--black-box", help="Use confidences only."),
    queries: int = typer.Option(20_000, help="Black box: queries per class."),
    steps: int = typer.Option(500, help="White box: gradient steps per class."),
    people: bool = typer.Option(False, "--classes-are-people", help="A class is one person."),
    limit: int = typer.Option(10_000, help="Training examples used for scoring."),
    out: Path = typer.Option(None, "--out", "-o", help="Also write the images to this PNG."),
    ledger: Path = typer.Option(None, help="Ledger (default: MODEL.model-inversion.json)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files."),
) -> None:
    """Model inversion: rebuild a representative of each class from the released model."""
    import torch

    from veil.audit.reconstruction import model as inversion_mod
    from veil.audit.reconstruction.scoring import save_images
    from veil.core import data as data_mod
    from veil.core.data import sample_indices
    from veil.core.errors import ConfigError, refuse_overwrite
    from veil.core.io import load_model

    path = ledger or model.with_suffix(".model-inversion.json")
    for target in (path, out):
        if target is not None:
            refuse_overwrite(target, force)
    loaded = load_model(model)
    train = data_mod.load(loaded.data_name(data, hint="pass --data"), "train")
    x, y = train.batch(torch.as_tensor(sample_indices(len(train), limit, seed=0)))
    try:
        wanted = (
            sorted({int(c) for c in y.unique()})
            if classes == "all"
            else [int(c) for c in classes.split(",")]
        )
    except ValueError as e:
        raise ConfigError(f"--class takes labels like 3 or 0,1 or all; got {classes!r}") from e
    result = inversion_mod.audit(loaded.model, x, y, wanted, black_box, queries, steps, people)
    entry = inversion_mod.guarantee(result)
    _write_audit(path, f"model inversion of {model.name}", "veil audit model-inversion", entry)
    if out is not None:
        save_images(result["images"], out)
    typer.echo(f"{entry.claim}; wrote {path}" + (f" and {out}" if out else ""))


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
    size: int = typer.Option(
        None, help="Trigger side in pixels (default a fifth of the image side: 6 on MNIST)."
    ),
    epochs: int = typer.Option(3, help="Training epochs (30 for the benchmark's figures)."),
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
    record = result.record("backdoor-attack")
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
    defenses: str = typer.Option("nc,abs", help="Scans to run: nc (Neural Cleanse), abs."),
    limit: int = typer.Option(2000, help="Clean examples used (from the test split)."),
    steps: int = typer.Option(300, help="Optimisation steps per label (nc) or neuron (abs)."),
    bound: float = typer.Option(0.06, help="abs: largest trigger, as a share of the pixels."),
    inputs: Path = typer.Option(None, help="strip: images to check (.npz with an array 'x')."),
    frr: float = typer.Option(0.01, help="strip: false-rejection rate on clean inputs."),
    ledger: Path = typer.Option(None, help="Ledger to write (default: MODEL.backdoor.json)."),
    force: bool = typer.Option(False, "--force", help="Overwrite the ledger."),
) -> None:
    """Scan a model for a backdoor. nc (clean data): reverse-engineer a trigger per label
    and flag labels whose trigger is anomalously small (MAD anomaly index > 2). abs (clean
    data): raise each last-hidden neuron alone, reverse-engineer triggers for those that
    force one label, flag a label when its trigger flips 90% of clean inputs (REASR). strip
    (needs --inputs): flag the inputs whose predictions survive blending with clean images;
    the model counts as backdoored when half of them are flagged."""
    from rich.console import Console

    from veil.audit.backdoor.scan import defenses_from, scan_model, strip_check
    from veil.audit.backdoor.strip import load_inputs
    from veil.core import data as data_mod
    from veil.core.errors import ConfigError, refuse_overwrite
    from veil.core.guarantees import Ledger
    from veil.core.io import load_model

    chosen = defenses_from(defenses)
    if "strip" in chosen and inputs is None:
        raise ConfigError("STRIP checks inputs, not the model alone: pass --inputs FILE.npz")
    out = ledger or model.with_suffix(".backdoor.json")
    refuse_overwrite(out, force)
    loaded = load_model(model)
    name = loaded.data_name(data, hint="pass --data")
    test = data_mod.load(name, "test")
    clean = test.subset(data_mod.sample_indices(len(test), min(limit, len(test)), 0))
    run = Ledger.start(f"backdoor scan of {model.name}", command="veil audit backdoor scan")
    if "strip" in chosen:
        suspicious = load_inputs(inputs, test.input_shape)
        run.add(strip_check(loaded.model, suspicious, test, frr, step="backdoor-scan")[1])
    for entry in scan_model(loaded.model, clean, chosen, steps, bound):
        run.add(entry)
    run.finish(status="ok")
    run.save(out)
    for entry in run.entries:
        Console(stderr=True).print(f"{entry.mechanism}: {entry.claim}")
    Console(stderr=True).print(f"wrote {out}")


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
    from veil.audit.backdoor.scan import strip_check
    from veil.audit.backdoor.strip import load_inputs
    from veil.core import data as data_mod
    from veil.core.errors import refuse_overwrite
    from veil.core.guarantees import Ledger
    from veil.core.io import load_model, write_json

    target = out or inputs.with_suffix(".strip.json")
    ledger_path = target.with_suffix(".ledger.json")
    for path in (target, ledger_path):
        refuse_overwrite(path, force)
    loaded = load_model(model)
    name = loaded.data_name(data, hint="pass --data")
    clean_set = data_mod.load(name, "test")
    suspicious = load_inputs(inputs, clean_set.input_shape)
    found, entry = strip_check(loaded.model, suspicious, clean_set, frr, copies)
    write_json(
        target,
        {
            "threshold": found.threshold,
            "false_rejection_on_clean": found.false_rejection,
            "flagged": found.flagged.tolist(),
            "scores": [round(float(s), 6) for s in found.scores],
        },
    )
    run = Ledger.start(f"STRIP on {inputs.name}", command="veil audit backdoor strip")
    run.add(entry)
    run.finish(status="ok")
    run.save(ledger_path)
    typer.echo(
        f"{int(found.flagged.sum())} of {len(found.flagged)} inputs flagged as triggered "
        f"(threshold {found.threshold:.4f}, clean false rejection {found.false_rejection:.3f}); "
        f"wrote {target} and {ledger_path} (`veil report` draws the entropy histograms)"
    )
