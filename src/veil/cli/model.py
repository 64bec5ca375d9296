"""``veil model``: inspect and evaluate veil model files."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from veil.core.net import PORT_FILE_HELP

app = typer.Typer(
    help="Model files: inspect, evaluate, seal for a recipient, sign and verify.",
    no_args_is_help=True,
)


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
    from veil.core.io import load_model
    from veil.core.train import evaluate as evaluate_model

    loaded = load_model(path)
    name = loaded.data_name(data, hint="pass --data")
    metrics = evaluate_model(loaded.model, data_mod.load(name, split))
    typer.echo(
        f"{path} on {name}/{split}: accuracy {metrics['accuracy']:.4f}, "
        f"loss {metrics['loss']:.4f}, n {metrics['n']}"
    )


@app.command("keygen")
def keygen(
    stem: Path = typer.Argument(..., help="Writes STEM.key (private, 0600) and STEM.pub."),
    kind: str = typer.Option(
        "x25519", help="x25519 (to seal for), ed25519 (to sign with), secret (watermark key)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite existing key files."),
) -> None:
    """Make a key pair: X25519 for receiving sealed models, Ed25519 for signing them."""
    from veil.protect.keys import generate

    priv, pub = generate(stem, kind, force)
    typer.echo(f"wrote {priv} (keep it secret)" + (f" and {pub} (share it)" if pub else ""))


@app.command("seal")
def seal(
    path: Path = typer.Argument(..., help="A .veil model file."),
    to: Path = typer.Option(None, "--to", help="Recipient's X25519 public key file (.pub)."),
    broker: str = typer.Option(None, help="Or: key broker URL that keeps the key."),
    token_file: Path = typer.Option(None, help="With --broker: the broker's admin token."),
    allow_device: list[Path] = typer.Option(
        None, help="With --broker: device.json of a device that may get the key (repeat)."
    ),
    out: Path = typer.Option(None, "--out", "-o", help="Sealed file (default: PATH.sealed)."),
    force: bool = typer.Option(False, "--force", help="Overwrite OUT."),
) -> None:
    """Encrypt a model for one recipient key, or under a key only a broker keeps.

    Threat model: without the recipient's private key (or the broker's release after device
    attestation) the sealed file reveals only its size; a device that unseals holds the
    plain model in memory.
    """
    from veil.core.errors import refuse_overwrite
    from veil.core.io import atomic_write, read_header
    from veil.protect import SealError, seal_file

    read_header(path)  # seal veil model files only: a clear error for anything else
    target = out or path.with_name(path.name + ".sealed")
    if (to is None) == (broker is None):
        raise SealError("give exactly one of --to (a recipient key) or --broker (a key broker)")
    if to is not None:
        seal_file(path, to, target, force)
        typer.echo(f"wrote {target}; only the holder of the private key for {to} can open it")
        return
    from veil.protect.broker import seal_with_broker

    if token_file is None:
        raise SealError("--broker needs --token-file (the broker's admin token)")
    refuse_overwrite(target, force)
    devices = [json.loads(p.read_text()) for p in allow_device or []]
    blob = seal_with_broker(path.read_bytes(), broker, token_file.read_text().strip(), devices)
    atomic_write(target, blob)
    typer.echo(f"wrote {target}; its key is kept by {broker} for {len(devices)} device(s)")


@app.command("unseal")
def unseal(
    path: Path = typer.Argument(..., help="A sealed model file."),
    key: Path = typer.Option(None, "--key", help="Your X25519 private key file (.key)."),
    broker: str = typer.Option(None, help="Or: the key broker that keeps the model's key."),
    device: Path = typer.Option(None, help="With --broker: this device's folder."),
    data: str = typer.Option(None, "--data", "-d", help="Evaluate on this data set too."),
) -> None:
    """Decrypt a sealed model in memory (never to disk), check it, show it, and evaluate it."""
    from veil.core import data as data_mod
    from veil.core.io import load_model_bytes
    from veil.core.train import evaluate
    from veil.protect import SealError, unseal_file

    if (key is None) == (broker is None) or (broker and device is None):
        raise SealError("give --key, or --broker with --device")
    if key is not None:
        payload = unseal_file(path, key)
    else:
        from veil.protect.broker import Device, unseal_with_broker

        payload = unseal_with_broker(path.read_bytes(), broker, Device(device))
    loaded = load_model_bytes(payload, str(path))
    typer.echo(
        f"{path}: authentic; {loaded.spec.name} {tuple(loaded.spec.input_shape)} -> "
        f"{loaded.spec.num_classes} classes"
    )
    if data:
        metrics = evaluate(loaded.model, data_mod.load(data, "test"))
        typer.echo(f"accuracy on {data}/test: {metrics['accuracy']:.4f}")


@app.command("device")
def device(
    folder: Path = typer.Argument(..., help="The device's folder (made if missing)."),
) -> None:
    """Print (and write to FOLDER/device.json) what a model owner needs to allow this device."""
    from veil.protect.broker import Device

    facts = Device(folder).identity()
    (folder / "device.json").write_text(json.dumps(facts, indent=2))
    typer.echo(json.dumps(facts))


@app.command("broker")
def broker_serve(
    folder: Path = typer.Option(Path("key-broker"), "--folder", help="Keys and the admin token."),
    port: int = typer.Option(8471, help="Port on 127.0.0.1 (0: one the system chooses)."),
    port_file: Path = typer.Option(None, help=PORT_FILE_HELP),
) -> None:
    """Serve model keys to attested devices (admin token in FOLDER/broker.token, 0600)."""
    import secrets

    from veil.core.io import write_private
    from veil.core.net import listening, serve
    from veil.protect.broker import create_app

    folder.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    write_private(folder / "broker.token", token)
    sock = listening("127.0.0.1", port, port_file)
    typer.echo(f"key broker on http://127.0.0.1:{sock.getsockname()[1]}")
    serve(create_app(folder, token), sock)


@app.command("sign")
def sign(
    paths: list[Path] = typer.Argument(..., help="Model files to cover."),
    key: Path = typer.Option(..., "--key", help="Your Ed25519 private key file (.key)."),
    out: Path = typer.Option(..., "--out", "-o", help="Manifest to write (e.g. model.sig.json)."),
    force: bool = typer.Option(False, "--force", help="Overwrite OUT."),
) -> None:
    """Sign a manifest of the files' SHA-256 digests with Ed25519."""
    from veil.protect import sign as sign_files

    sign_files(paths, key, out, force)
    typer.echo(f"wrote {out} covering {len(paths)} file(s)")


@app.command("verify")
def verify(
    manifest: Path = typer.Argument(..., help="A signed manifest (.sig.json)."),
    pub: Path = typer.Option(..., "--pub", help="The signer's Ed25519 public key (.pub)."),
) -> None:
    """Check a signed manifest and every file it covers; exit 2 on any mismatch."""
    from veil.protect import verify as verify_files

    names = verify_files(manifest, pub)
    typer.echo(f"{manifest}: signature good; {len(names)} file(s) match: {', '.join(names)}")


@app.command("scan")
def scan(
    path: Path = typer.Argument(..., help="APK/AAB/IPA/JAR/zip, folder, or file."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    sarif: Path = typer.Option(None, help="Also write SARIF 2.1.0 here."),
    fail_on: str = typer.Option(
        "", help="Exit 1 on: unprotected, unsafe, key-beside (comma list)."
    ),
) -> None:
    """Find models shipped in an app or folder: format, framework, protection, unsafe pickles."""
    import json

    from rich.console import Console
    from rich.table import Table

    from veil.core.errors import ConfigError
    from veil.core.io import write_json
    from veil.protect.scan import scan as run_scan
    from veil.protect.scan import to_sarif, violations

    policy = {p.strip() for p in fail_on.split(",") if p.strip()}
    unknown = policy - {"unprotected", "unsafe", "key-beside"}
    if unknown:
        raise ConfigError(
            f"unknown --fail-on {sorted(unknown)}; use unprotected, unsafe, key-beside"
        )
    report = run_scan(path)
    if sarif:
        write_json(sarif, to_sarif(report))
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        table = Table(title=f"models in {path}")
        for col in ("path", "format", "protection", "entropy", "key beside"):
            table.add_column(col, overflow="fold")
        for m in report.models:
            table.add_row(
                m["path"],
                m["format"],
                m["protection"],
                f"{m['entropy']:.2f}",
                "yes" if m["key_beside"] else "-",
            )
        console = Console()
        console.print(table)
        for u in report.unsafe:
            console.print(f"[red]unsafe[/] {u['path']}: {u['reason']}")
        frameworks = sorted(set(report.frameworks))
        console.print(f"frameworks: {', '.join(frameworks) or '-'}; skipped: {len(report.skipped)}")
    broken = violations(report, policy)
    if broken:
        typer.echo(f"{len(broken)} finding(s) break --fail-on {fail_on}", err=True)
        raise typer.Exit(1)


@app.command("watermark")
def watermark(
    data: str = typer.Option(..., "--data", "-d", help="Training data set."),
    key: Path = typer.Option(
        ..., "--key", help="Secret key file (veil model keygen --kind secret)."
    ),
    model: str = typer.Option("mnist-cnn", "--model", "-m", help="Network name."),
    epochs: int = typer.Option(3, help="Training epochs."),
    lr: float = typer.Option(0.05, help="Learning rate."),
    triggers: int = typer.Option(100, help="Trigger inputs derived from the key."),
    out: Path = typer.Option(Path("model.veil"), "--out", "-o", help="Model file to write."),
    force: bool = typer.Option(False, "--force", help="Overwrite OUT."),
) -> None:
    """Train a model that carries a secret ownership watermark (trigger set from KEY)."""
    from veil.cli.train import check_outputs, save_outputs
    from veil.core.train import fit, prepare, training_record
    from veil.protect.keys import load
    from veil.protect.watermark import ownership_guarantee, trigger_set, verify, with_triggers

    secret = load(key, "secret", private=True)
    ledger_path = check_outputs(out, None, force)
    p = prepare(data, model)
    marks = trigger_set(secret, p.train.input_shape, p.train.num_classes, triggers)
    result = fit(p.model, with_triggers(p.train, marks), epochs=epochs, lr=lr, eval_data=p.test)
    verdict = verify(p.model, secret, p.train.input_shape, p.train.num_classes, triggers)
    record = training_record(
        "watermark",
        final=result.final,
        curves=result.curves(),
        details=p.details(result.seconds, result.device),
    )
    save_outputs(
        out,
        ledger_path,
        p,
        record,
        f"watermarked {model} on {data}",
        ownership_guarantee(verdict, triggers),
    )
    typer.echo(
        f"test accuracy {result.final['accuracy']:.4f}; watermark {verdict.hits}/"
        f"{verdict.n} triggers, p = {verdict.p_value:.2e}; wrote {out}"
    )


@app.command("verify-watermark")
def verify_watermark(
    path: Path = typer.Argument(..., help="A suspect .veil model file."),
    key: Path = typer.Option(..., "--key", help="The owner's secret watermark key."),
    triggers: int = typer.Option(100, help="Trigger inputs derived from the key."),
) -> None:
    """Test a suspect model for your watermark: hits on the trigger set and a p-value."""
    from veil.core.io import load_model
    from veil.protect.keys import load
    from veil.protect.watermark import verify

    loaded = load_model(path)
    v = verify(
        loaded.model,
        load(key, "secret", private=True),
        loaded.spec.input_shape,
        loaded.spec.num_classes,
        triggers,
    )
    verdict = "carries the watermark" if v.owned else "no evidence of the watermark"
    typer.echo(
        f"{path}: {v.hits}/{v.n} triggers as the key says (chance {v.chance:.3f} each), "
        f"p = {v.p_value:.2e}: {verdict}"
    )
