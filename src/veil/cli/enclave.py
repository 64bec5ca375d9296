"""``veil enclave``: train on sealed data with confined code; answer queries as a black box.

Chiron's design on this machine: the runtime attests (simulated: no SGX/SEV/TDX here, so the
operator of the machine could read memory; confinement of the training code is real).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from veil.core.net import PORT_FILE_HELP

app = typer.Typer(
    help=__doc__.split("\n\n")[0].removeprefix("``veil enclave``: "), no_args_is_help=True
)
FOLDER = typer.Option(Path("enclave-service"), "--folder", help="The service's folder.")
URL = typer.Option("http://127.0.0.1:8470", "--url", help="The service's address.")


@app.command("serve")
def serve(
    folder: Path = FOLDER,
    port: int = typer.Option(8470, help="Port on 127.0.0.1 (0: one the system chooses)."),
    port_file: Path = typer.Option(None, help=PORT_FILE_HELP),
    clients: int = typer.Option(1, min=1, help="Client tokens to make."),
    rows: int = typer.Option(10_000, help="Lifetime budget of answered rows per client."),
    rate: float = typer.Option(50.0, help="Requests per second per client."),
    allow_top_k: bool = typer.Option(False, help="Allow rounded top-k answers."),
    workers: int = typer.Option(2, min=1, help="Confined inference workers per model."),
) -> None:
    """Start the service on 127.0.0.1 (tokens and platform facts go in --folder)."""
    import secrets

    import veil.enclave as pkg
    from veil.core.io import write_private
    from veil.core.net import listening, serve
    from veil.enclave.attest import SimulatedBackend
    from veil.enclave.runtime import Runtime
    from veil.enclave.sandbox import Limits, bwrap
    from veil.enclave.service import Budget, create_app

    bwrap()  # a clear error now if bubblewrap is missing
    folder.mkdir(parents=True, exist_ok=True)
    settings = {"rows": rows, "rate": rate, "allow_top_k": allow_top_k, "limits": Limits().__dict__}
    policy = json.dumps(settings, sort_keys=True).encode()
    runtime_files = sorted(Path(pkg.__file__).parent.glob("*.py"))
    backend = SimulatedBackend(runtime_files, policy, folder / "platform")
    roles = {"owner": 1, "operator": 1, "client": clients}
    tokens = {role: [secrets.token_urlsafe(24) for _ in range(n)] for role, n in roles.items()}
    write_private(folder / "tokens.json", json.dumps(tokens, indent=2))
    facts = {"measurement": backend.measure().hex(), "platform_key": backend.platform_key().hex(),
             "platform": backend.name, "settings": settings}  # fmt: skip
    (folder / "platform.json").write_text(json.dumps(facts, indent=2))
    runtime = Runtime(backend, folder / "store", workers=workers)
    by_token = {t: role for role, ts in tokens.items() for t in ts}
    budget = Budget(rate=rate, burst=max(1, int(rate * 2)), rows=rows)
    web = create_app(runtime, by_token, budget, allow_top_k)
    sock = listening("127.0.0.1", port, port_file)
    typer.echo(
        f"enclave service on http://127.0.0.1:{sock.getsockname()[1]} "
        f"(measurement {facts['measurement'][:16]}…)"
    )
    try:
        serve(web, sock)
    finally:
        runtime.close()


def _client(folder: Path, url: str, role: str):
    from veil.enclave.client import Client, read_tokens

    return Client(url, read_tokens(folder)[role])


@app.command("attest")
def attest(folder: Path = FOLDER, url: str = URL) -> None:
    """Check the service's quote against the published measurement (fresh nonce)."""
    import os

    from veil.enclave.attest import AttestationError, Backend, report_data
    from veil.enclave.client import policy_from

    nonce = os.urandom(32)
    evidence, enclave_key = _client(folder, url, "owner").attestation(nonce)
    try:
        Backend.verify(evidence, policy_from(folder), report_data(enclave_key, nonce))
    except AttestationError as e:
        raise AttestationError(f"the enclave does not attest: {e}") from e
    typer.echo(f"attested: platform {evidence.platform}, measurement {evidence.measurement.hex()}")
    typer.echo("note: simulated platform; confinement is real, memory confidentiality is not")


@app.command("upload")
def upload(
    data: Path = typer.Argument(..., help="The data file to seal and upload (any bytes)."),
    dataset: str = typer.Option(..., help="Name of the data set in the enclave."),
    key_file: Path = typer.Option(Path("data.key"), help="The data key (made if missing)."),
    folder: Path = FOLDER,
    url: str = URL,
) -> None:
    """Attest, release the data key to the enclave, upload the data sealed in chunks."""
    import os

    from veil.core.io import write_private
    from veil.enclave.client import policy_from

    if not key_file.exists():
        write_private(key_file, os.urandom(32).hex())
    key = bytes.fromhex(key_file.read_text().strip())
    client = _client(folder, url, "owner")
    measurement = client.attest_and_release(dataset, key, policy_from(folder))
    size = client.upload(dataset, data.read_bytes(), key)
    typer.echo(f"{dataset}: key released to measurement {measurement[:16]}…, {size} bytes sealed")


@app.command("submit")
def submit(
    code: Path = typer.Argument(
        ...,
        help="Python file with train(data) -> bytes, "
        "load(model) and predict(state, rows) -> float32 scores.",
    ),
    dataset: list[str] = typer.Option(
        ...,
        help="Data set to train on (repeat for several "
        "sites: one confined worker each, with --rounds).",
    ),
    classes: int = typer.Option(..., help="Number of classes predict() scores."),
    rounds: int = typer.Option(0, help="Rounds of distributed training (several data sets)."),
    folder: Path = FOLDER,
    url: str = URL,
) -> None:
    """Train: the code runs confined; you get a model id and a status, never the model.

    One data set: CODE's train(data) -> model bytes. Several: CODE's load_shard(shard) and
    local(state, params) -> params, averaged by the runtime each round. Either way
    load(model) and predict(state, rows) then answer queries."""
    names = dataset[0] if len(dataset) == 1 else dataset
    job = _client(folder, url, "operator").submit(names, code.read_text(), classes, rounds)
    typer.echo(json.dumps(job))


@app.command("query")
def query(
    model: str = typer.Argument(..., help="Model id from submit."),
    rows: Path = typer.Argument(..., help=".npy file of float32 rows."),
    top_k: int = typer.Option(0, help="Ask for rounded top-k scores (if allowed)."),
    folder: Path = FOLDER,
    url: str = URL,
    role: str = typer.Option("client", help="Token to use: client or owner."),
) -> None:
    """Labels for ROWS from a model (black-box)."""
    import numpy as np

    x = np.load(rows, allow_pickle=False)
    typer.echo(json.dumps(_client(folder, url, role).query(model, x, top_k)))


@app.command("audit-log")
def audit_log(
    folder: Path = FOLDER,
    url: str = URL,
    ledger: Path = typer.Option(None, help="Also write a ledger with the service's guarantees."),
) -> None:
    """Fetch the audit log, check its chain and signed head, print it."""
    from veil.enclave.service import guarantees, verify_log

    doc = _client(folder, url, "owner").audit()
    try:
        verify_log(doc["entries"], doc["head"])
    except ValueError as e:
        from veil.enclave.client import ServiceError

        raise ServiceError(f"the audit log does not verify: {e}") from e
    for e in doc["entries"]:
        typer.echo(f"{e['i']:4d} {e['who']:18s} {e['action']:8s} {json.dumps(e['facts'])}")
    typer.echo(f"head {doc['head']['hash'][:16]}… signed, {doc['head']['count']} entries verified")
    if ledger is not None:
        from veil.core.guarantees import Ledger

        run = Ledger.start("enclave service", command="veil enclave audit-log")
        for g in guarantees(json.loads((folder / "platform.json").read_text()), doc):
            run.add(g)
        run.finish(status="ok")
        run.save(ledger)
        typer.echo(f"wrote {ledger}")
