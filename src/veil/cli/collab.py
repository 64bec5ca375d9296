"""``veil collab``: collaborative training (DSSGD, FedAvg) in-process or on Flower."""

from __future__ import annotations

from pathlib import Path

import typer

from veil.cli.train import check_outputs, parse_options, save_outputs

app = typer.Typer(
    help="Collaborative learning (training-data privacy): participants train together "
    "without pooling data. Threat model: an honest-but-curious server and participants see "
    "every shared update; each participant's own code and randomness are trusted.",
    no_args_is_help=True,
)


@app.command("run")
def run(
    algo: str = typer.Option("dssgd", help="dssgd or fedavg."),
    data: str = typer.Option("mnist", "--data", "-d", help="Data set name."),
    model: str = typer.Option("mlp", "--model", "-m", help="Network name."),
    option: list[str] = typer.Option([], "--option", "-O", help="Model option KEY=VALUE."),
    participants: int = typer.Option(5, help="Number of participants."),
    partition: str = typer.Option("iid", help="iid, by_key or dirichlet(ALPHA)."),
    rounds: int = typer.Option(10, help="Rounds (each participant uploads once per round)."),
    order: str = typer.Option("round-robin", help="round-robin, random or async (DSSGD)."),
    theta_up: float = typer.Option(0.1, help="θu: fraction of parameters uploaded."),
    theta_down: float = typer.Option(0.1, help="θd: fraction of parameters downloaded."),
    upload: str = typer.Option("largest", help="Upload selection: largest, random, svt."),
    download: str = typer.Option("largest", help="Download policy: largest, frequency, recent."),
    tau: float = typer.Option(0.0, help="Threshold τ for random/svt selection."),
    gamma: float = typer.Option(None, help="Bound γ: shared values truncated to [-γ, γ]."),
    staleness: int = typer.Option(None, help="Most versions an update may lag (async)."),
    residual: bool = typer.Option(
        False, help="Keep and re-offer unshared changes (error feedback; not in the paper)."
    ),
    dp_epsilon: float = typer.Option(
        None, help="DSSGD with DP: whole-run ε per participant (selection becomes svt)."
    ),
    delta: float = typer.Option(1e-5, help="δ for the DP figures."),
    lr: float = typer.Option(0.1, help="Local learning rate."),
    batch_size: int = typer.Option(32, help="Local batch size."),
    local_epochs: float = typer.Option(1.0, help="Local passes over a shard per exchange."),
    local_dp_sigma: float = typer.Option(None, help="Local DP-SGD noise multiplier."),
    local_dp_clip: float = typer.Option(1.0, help="Local DP-SGD clip norm."),
    fraction: float = typer.Option(1.0, help="FedAvg: fraction of clients per round."),
    fedavg_dp_sigma: float = typer.Option(None, help="FedAvg central DP noise multiplier."),
    clip: float = typer.Option(1.0, help="FedAvg central DP clip norm."),
    secure: bool = typer.Option(
        False, help="FedAvg with Flower's SecAgg+ secure aggregation (needs --engine flower)."
    ),
    drop_rate: float = typer.Option(0.0, help="Simulated chance a participant drops a round."),
    seed: int = typer.Option(0, help="Seed for data split, weights and every generator."),
    limit: int = typer.Option(None, help="Use N random training examples only."),
    engine: str = typer.Option("inprocess", help="inprocess or flower (real processes)."),
    checkpoint: Path = typer.Option(None, help="Checkpoint file, written after every round."),
    resume: bool = typer.Option(False, help="Continue from --checkpoint."),
    baselines: bool = typer.Option(False, help="Also train centralized and standalone."),
    out: Path = typer.Option(Path("model.veil"), "--out", "-o", help="Model file to write."),
    ledger: Path = typer.Option(None, help="Ledger to write (default: OUT with .ledger.json)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files."),
    write_app: Path = typer.Option(
        None, help="Instead of running: write the Flower app for a multi-machine run here."
    ),
) -> None:
    """Train one model collaboratively; writes the global model and a ledger with the
    training-data guarantee (what was shared, θ, γ, and ε for the whole run when DP)."""
    from rich.console import Console

    from veil import collab
    from veil.core.train import Prepared

    ledger_path = check_outputs(out, ledger, force)
    cfg = collab.CollabConfig.from_flat(
        algo=algo,
        data=data,
        model=model,
        model_options=parse_options(option),
        participants=participants,
        partition=partition,
        rounds=rounds,
        order=order,
        theta_up=theta_up,
        theta_down=theta_down,
        upload="svt" if dp_epsilon else upload,
        download=download,
        tau=tau,
        gamma=gamma,
        staleness=staleness,
        residual=residual,
        dp_epsilon=dp_epsilon,
        delta=delta,
        local_lr=lr,
        local_batch_size=batch_size,
        local_epochs=local_epochs,
        local_dp_sigma=local_dp_sigma,
        local_dp_clip=local_dp_clip,
        fedavg_fraction=fraction,
        fedavg_dp_sigma=fedavg_dp_sigma,
        fedavg_clip=clip,
        fedavg_secure=secure,
        fedavg_delta=delta,
        drop_rate=drop_rate,
        seed=seed,
        limit=limit,
    )
    if write_app is not None:
        _write_app(write_app, cfg, force)
        return
    result = collab.train(
        cfg, engine=engine, checkpoint=checkpoint, resume=resume, step="collab-train"
    )
    base = collab.baselines(cfg) if baselines else None
    prepared = Prepared(
        result.model, result.spec, result.train, result.test, {"limit": limit, "seed": seed}
    )
    save_outputs(
        out,
        ledger_path,
        prepared,
        result.record("collab-train", base),
        f"{algo.upper()} {model} on {data}",
        result.guarantee,
    )
    extra = (
        (
            f"; centralized {base['centralized_accuracy']:.4f}, standalone "
            f"{base['standalone_accuracy']:.4f}"
        )
        if base
        else ""
    )
    Console(stderr=True, soft_wrap=True).print(
        f"{result.guarantee.claim}\nglobal test accuracy {result.final_accuracy:.4f}{extra}; "
        f"upload {result.totals['upload_fraction']:.1%} of dense; "
        f"{result.totals['seconds']:.1f} s; wrote {out} and {ledger_path}"
    )


def _write_app(folder: Path, cfg, force: bool) -> None:
    from veil.collab.flower.launcher import app_config, write_app
    from veil.core.errors import refuse_overwrite

    refuse_overwrite(folder / "pyproject.toml", force)
    result = folder.resolve() / "result.safetensors"
    write_app(folder, app_config(cfg, result))
    typer.echo(
        f"wrote the Flower app to {folder}; start the SuperLink and one `veil collab node` per "
        f"participant, then `flwr run {folder} <connection>`; the ServerApp writes the global "
        f"model to {result.with_suffix('.veil')} and its ledger beside it, on the "
        "SuperLink's machine"
    )


@app.command("node")
def node(
    superlink: str = typer.Option(..., help="The SuperLink's address, HOST:PORT."),
    partition_id: int = typer.Option(..., help="This participant's id, 0..N-1."),
    num_partitions: int = typer.Option(..., help="N, the number of participants."),
    root_certificates: Path = typer.Option(
        None, help="CA certificate (PEM) that signed the SuperLink's TLS certificate."
    ),
    insecure: bool = typer.Option(False, help="No TLS to the SuperLink (testing only)."),
    auth_key: Path = typer.Option(
        None,
        help="This node's private key (its .pub beside it) for a SuperLink that only lets "
        "known nodes in (--enable-supernode-auth).",
    ),
    port: int = typer.Option(9094, help="Local port for the SuperNode's Runtime API."),
    logs: Path = typer.Option(Path("veil-node"), help="Folder for the node's logs."),
) -> None:
    """Run one participant's node until Ctrl-C: Flower's SuperNode (process isolation) and
    veil's task runner, which keeps the participant's model and data loaded."""
    from veil.collab.flower.launcher import run_node
    from veil.core.errors import ConfigError

    if root_certificates is None and not insecure:
        raise ConfigError("give --root-certificates CA.pem for TLS, or --insecure for a test")
    if not 0 <= partition_id < num_partitions:
        raise ConfigError(f"--partition-id must be in 0..{num_partitions - 1}")
    certs = str(root_certificates) if root_certificates else None
    typer.echo(f"node {partition_id}/{num_partitions} -> {superlink}; logs in {logs}/logs")
    keys = (str(auth_key), f"{auth_key}.pub") if auth_key else None
    run_node(superlink, partition_id, num_partitions, port, certs, logs, keys)
