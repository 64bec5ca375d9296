"""``veil mpc``: private inference and training by non-colluding parties and a dealer."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(
    help="Secure computation (input and output privacy): the model owner and the input "
    "owner (and optionally a third party) compute on additive shares; only the input owner "
    "sees the result. Threat model: semi-honest parties that do not collude, and a dealer "
    "that colludes with none.",
    no_args_is_help=True,
)

COMPARE_HELP = (
    "Bits a comparison (ReLU, max) works on: 64 (exact for every encodable value), 32 (one "
    "round and half the bytes fewer; exact while compared values stay below 32,768), or auto "
    "(32 where interval bounds over --input-range prove it, else 64)."
)
RANGE_HELP = "The public range of the input values (auto comparisons are sized on it)."
MASTER_FD_HELP = (
    "Rank 0: a socket already listening on --master's port, passed down by the launcher "
    "(veil's own process launcher; by hand, leave it out)."
)


def _pixel_part(paths: list[Path], holders: str | None, key: Path | None, bits: int):
    """This rank's XOR part of a shared 8-bit image, flattened to one row."""
    from veil.core.errors import ConfigError
    from veil.imaging.images import pixel_part, read_share
    from veil.imaging.stego import read_key

    try:
        indices = [int(h) for h in (holders or "").split(",")]
    except ValueError as e:
        raise ConfigError(f"--holders takes share indices like 1,2,3; got {holders!r}") from e
    part, _ = pixel_part([read_share(p, read_key(key), bits) for p in paths], indices)
    return part.reshape(1, -1)


def _start_dealer(master: str, parties: int):
    """The dealer rank as a child of this (the input owner's) process."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "veil.cli.main", "-q", "mpc", "party", "--rank",
               str(parties), "--master", master, "--parties", str(parties)]  # fmt: skip
    return subprocess.Popen(command, start_new_session=True)


def _stop_dealer(proc) -> None:
    """Wait for the dealer to finish its session; kill it if it does not."""
    import subprocess

    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _weight_file(path: Path, rank: int, parties: int) -> tuple[list, dict]:
    """Rank ``rank``'s weight shares and their file's header, refusing another party's file
    (files go party 0 first)."""
    from veil.encrypted.mpc.model import load_weight_shares
    from veil.encrypted.mpc.ring import MPCError

    shares, meta = load_weight_shares(path)
    if (meta.get("party"), meta.get("parties")) != (rank, parties):
        raise MPCError(f"{path} holds party {meta.get('party')}'s shares of {meta.get('parties')}"
                       f", not rank {rank}'s of {parties} (party 0's file first)")  # fmt: skip
    return shares, meta


@app.command("party")
def party(
    rank: int = typer.Option(..., help="0: model owner, 1: input owner, last: the dealer."),
    parties: int = typer.Option(2, help="Computing parties: 2, or 3 (rank 2 brings nothing)."),
    master: str = typer.Option(..., help="HOST:PORT where rank 0 listens for the others."),
    master_fd: int = typer.Option(None, hidden=True, help=MASTER_FD_HELP),
    model: Path = typer.Option(None, help="Rank 0: the .veil model file."),
    data: str = typer.Option(None, "--data", "-d", help="Rank 1: data set to classify."),
    limit: int = typer.Option(100, help="Rank 1: test images (random, seeded)."),
    repeat: int = typer.Option(1, help="Run the inference this many times (latency: warm runs)."),
    result: Path = typer.Option(None, help="Write this rank's result (JSON) here."),
    labels_only: bool = typer.Option(False, help="Argmax on shares: rank 1 learns labels only."),
    compare_bits: str = typer.Option("auto", help=COMPARE_HELP),
    input_range: str = typer.Option("0,1", help=RANGE_HELP),
    weight_shares: Path = typer.Option(
        None, help="Computing ranks: this party's weight shares (a model nobody holds whole)."
    ),
    serve_dealer: bool = typer.Option(
        False,
        "--serve-dealer",
        help="Rank 1: run the dealer here too (client-generated "
        "triples: trust no third party for the input; the weights are not hidden from you).",
    ),
    image_share: list[Path] = typer.Option(
        None, help="Ranks 0 and 1: a share of an 8-bit image this rank holds (repeatable)."
    ),
    holders: str = typer.Option(None, help="With --image-share: the k share indices used."),
    key: Path = typer.Option(None, help="Stego key file, for shares hidden in images."),
    bits: int = typer.Option(1, help="Bits per channel value used when hiding."),
) -> None:
    """Run one rank of a private inference over TCP (torch.distributed, gloo). The input is
    rank 1's data set, or an image shared with `veil image share` whose shares ranks 0 and 1
    hold (nobody reconstructs it)."""
    import torch

    from veil.core.errors import ConfigError
    from veil.encrypted.mpc.comm import GlooComm
    from veil.encrypted.mpc.infer import load_shared, parse_range, test_images
    from veil.encrypted.mpc.model import run_party

    if serve_dealer and rank != 1:
        raise ConfigError("--serve-dealer is for rank 1, the input owner")
    shared = images = labels = part = mine = None
    sharing = 0
    if weight_shares is not None and rank < parties:
        mine, meta = _weight_file(weight_shares, rank, parties)
        sharing = meta["sharing_id"]
    elif rank == 0:
        if model is None:
            raise ConfigError("rank 0 holds the model: pass --model (or --weight-shares)")
        shared, _ = load_shared(model)
    if image_share and rank < parties:
        part = _pixel_part(image_share, holders, key, bits)
    elif rank == 1:
        if data is None:
            raise ConfigError("rank 1 holds the input: pass --data (or --image-share)")
        images, labels = test_images(data, limit)
    torch.set_num_threads(1)  # one core per rank: ranks on one machine do not oversubscribe
    dealer = _start_dealer(master, parties) if serve_dealer else None
    comm = GlooComm(rank, parties, master, listen_fd=master_fd)
    try:
        n = torch.tensor([len(images) if images is not None else 1])
        comm.dist.broadcast(n, src=1)
        out = run_party(comm, shared, images, int(n.item()), labels_only=labels_only,
                        image_shares=part, repeat=repeat, compare_bits=compare_bits,
                        input_range=parse_range(input_range), weight_shares=mine,
                        sharing_id=sharing)  # fmt: skip
        times = out.get("times", [0.0])  # the dealer times nothing
        # the first inference of a session warms up; the median of the rest
        out["seconds"] = sorted(times[1:])[len(times[1:]) // 2] if len(times) > 1 else times[0]
    finally:
        comm.close()
        if dealer is not None:
            _stop_dealer(dealer)
    if "logits" in out or "labels" in out:
        predicted = out["logits"].argmax(1) if "logits" in out else out["labels"]
        if labels is not None:
            out["accuracy"] = float((predicted == labels).mean())
        out["predicted"] = predicted.tolist()
        out.update({k: out[k].tolist() for k in ("logits", "labels") if k in out})
    if result:
        result.write_text(json.dumps(out))


@app.command("infer")
def infer(
    model: Path = typer.Argument(..., help="A .veil model (Linear/Conv/AvgPool, ReLU or x²)."),
    data: str = typer.Option(None, "--data", "-d", help="Data set (default: the model's)."),
    limit: int = typer.Option(100, help="Test images to classify."),
    engine: str = typer.Option("processes", help="processes (one per rank, TCP) or threads."),
    parties: int = typer.Option(2, help="Computing parties: 2, or 3 (the third brings nothing)."),
    ledger: Path = typer.Option(None, help="Write the input/output guarantees here."),
    labels_only: bool = typer.Option(
        False, help="Compute the argmax on shares: the input owner learns labels, not logits."
    ),
    compare_bits: str = typer.Option("auto", help=COMPARE_HELP),
    input_range: str = typer.Option("0,1", help=RANGE_HELP),
    dealer: str = typer.Option(
        "trusted",
        help="trusted (a third process) or client (the input owner deals: no third "
        "party trusted for the input; the weights are not hidden from the client).",
    ),
) -> None:
    """Classify test images privately; compare with the plaintext model."""
    from veil.core.guarantees import Ledger
    from veil.encrypted.mpc.infer import infer_saved
    from veil.encrypted.mpc.model import guarantees

    name, numbers, used_bits = infer_saved(model, data, limit, engine, labels_only, parties,
                                           compare_bits, input_range, dealer)  # fmt: skip
    seconds = numbers["seconds"]
    typer.echo(
        f"{numbers['images']} {name} images classified on shares ({parties} parties, {engine}): "
        f"accuracy {numbers['accuracy_mpc']:.4f} (plaintext {numbers['accuracy_plain']:.4f}), "
        f"argmax agreement {numbers['argmax_agreement']:.4f}, {seconds:.2f} s"
    )
    if ledger:
        run = Ledger.start(f"mpc infer {name}")
        for g in guarantees(numbers, "mpc-infer", labels_only, parties, used_bits, dealer):
            run.add(g)
        run.finish()
        run.save(ledger)


@app.command("infer-shared")
def infer_shared(
    shares: list[Path] = typer.Argument(
        ..., help="Every party's weight-share file (`veil mpc train --keep-shared`), in order."
    ),
    data: str = typer.Option(None, "--data", "-d", help="Data set (default: the training's)."),
    limit: int = typer.Option(100, help="Test images to classify."),
    engine: str = typer.Option("processes", help="processes (one per rank, TCP) or threads."),
    ledger: Path = typer.Option(None, help="Write the input/output guarantees here."),
) -> None:
    """Classify test images with a model nobody holds whole: the parties bring their shares
    of the weights (from secure training), the input owner its images; only it sees the
    logits. Accuracy is reported; no plaintext model exists to compare with."""
    import numpy as np

    from veil.core.errors import ConfigError
    from veil.core.guarantees import Ledger
    from veil.encrypted.mpc.infer import test_images
    from veil.encrypted.mpc.launch import shared_weights_processes
    from veil.encrypted.mpc.model import guarantees, infer_threads

    loaded = [_weight_file(path, rank, len(shares)) for rank, path in enumerate(shares)]
    name = data or loaded[0][1].get("data")
    if not name:
        raise ConfigError("the share files name no data set: pass --data")
    x, y = test_images(name, limit)
    parties = len(loaded)
    if engine == "threads":
        out = infer_threads(None, x, parties=parties, weight_shares=[s for s, _ in loaded],
                            sharing_ids=[m["sharing_id"] for _, m in loaded])  # fmt: skip
    elif engine == "processes":
        out = shared_weights_processes(list(shares), name, limit)
    else:
        raise ConfigError(f"unknown engine {engine!r}; use processes or threads")
    accuracy = float((np.asarray(out["logits"]).argmax(1) == y).mean())
    typer.echo(f"{len(x)} {name} images classified by a model kept in shares ({parties} "
               f"parties, {engine}): accuracy {accuracy:.4f}")  # fmt: skip
    if ledger:
        run = Ledger.start(f"mpc infer-shared {name}")
        numbers = {"images": len(x), "accuracy_mpc": accuracy, "model_kept_shared": True}
        for g in guarantees(numbers, "mpc-infer", parties=parties, compare_bits=64):
            run.add(g)
        run.finish()
        run.save(ledger)


@app.command("infer-shares")
def infer_shares(
    model: Path = typer.Argument(..., help="A .veil model whose input is the shared image."),
    shares: list[Path] = typer.Argument(..., help="k shares (.vshare or stego images)."),
    key: Path = typer.Option(None, help="Stego key file, for shares hidden in images."),
    bits: int = typer.Option(1, help="Bits per channel value used when hiding."),
    labels_only: bool = typer.Option(False, help="The argmax on shares: the label only."),
    ledger: Path = typer.Option(None, help="Write the input/output guarantees here."),
) -> None:
    """Classify an image shared with `veil image share` without reconstructing it: rank 0
    (the model) holds the first share, rank 1 the other k-1, as 3 processes on 127.0.0.1;
    each turns its shares into an XOR part of the pixels and the model runs on those."""
    from veil.core.guarantees import Ledger
    from veil.encrypted.mpc.infer import traffic_numbers
    from veil.encrypted.mpc.launch import image_processes
    from veil.encrypted.mpc.model import guarantees

    out = image_processes(model, shares, key, bits, labels_only=labels_only)
    label = out["predicted"][0]
    shown = "" if labels_only else f", logits {[round(v, 3) for v in out['logits'][0]]}"
    typer.echo(f"label {label}{shown} ({out['seconds']:.2f} s); the image was never rebuilt")
    if ledger:
        numbers = {"images": 1, "seconds": round(out["seconds"], 3), "shares": len(shares),
                   **traffic_numbers(out["traffic"], 1)}  # fmt: skip
        run = Ledger.start(f"mpc infer-shares {model.name}")
        for g in guarantees(numbers, step="mpc-infer-shares", labels_only=labels_only):
            run.add(g)
        run.finish()
        run.save(ledger)


@app.command("train-party")
def train_party(
    rank: int = typer.Option(..., help="0: model owner (and records), 1-2: records, last: dealer."),
    parties: int = typer.Option(2, help="Computing parties (2 or 3), each with its records."),
    master: str = typer.Option(..., help="HOST:PORT where rank 0 listens for the others."),
    master_fd: int = typer.Option(None, hidden=True, help=MASTER_FD_HELP),
    data: str = typer.Option(..., "--data", "-d", help="Data set: each party takes its part."),
    limit: int = typer.Option(None, help="Records drawn from the training split (seeded)."),
    model: Path = typer.Option(None, help="Rank 0: the initial .veil model (an MLP)."),
    steps: int = typer.Option(100, help="SGD steps."),
    batch: int = typer.Option(32, help="Records per step."),
    lr: float = typer.Option(0.1, help="Learning rate."),
    seed: int = typer.Option(0, help="Seed of the (public) batch order and of the sample."),
    out: Path = typer.Option(
        None,
        help="Rank 0: write the trained model here (every rank, with --keep-shared: "
        "its weight shares).",
    ),
    result: Path = typer.Option(None, help="Write this rank's measurements (JSON) here."),
    keep_shared: bool = typer.Option(
        False, "--keep-shared", help="Nobody receives the model: each rank keeps its shares."
    ),
) -> None:
    """Run one rank of a secure training run over TCP (torch.distributed, gloo)."""
    import torch

    from veil.core.data import sample_arrays
    from veil.core.errors import ConfigError
    from veil.core.io import load_model, save_model
    from veil.encrypted.mpc.comm import GlooComm
    from veil.encrypted.mpc.train import Schedule, load_weights, parts_of
    from veil.encrypted.mpc.train import train_party as run_rank

    loaded = x = y = None
    if rank == 0 and (model is None or out is None):
        raise ConfigError("rank 0 holds the model: pass --model and --out")
    if keep_shared and rank < parties and out is None:
        raise ConfigError("with --keep-shared every computing rank writes its shares: pass --out")
    if rank == 0:
        loaded = load_model(model)
    if rank < parties:
        x, y = parts_of(*sample_arrays(data, "train", limit, seed), parties)[rank]
    classes = len(loaded.classes) if loaded else 0
    torch.set_num_threads(1)
    comm = GlooComm(rank, parties, master, listen_fd=master_fd)
    try:
        n = torch.tensor([classes])
        comm.dist.broadcast(n, src=0)
        schedule = Schedule(steps, batch, lr, seed)
        mine = loaded.model if loaded else None
        got = run_rank(comm, mine, x, y, int(n.item()), schedule, keep_shared=keep_shared)
    finally:
        comm.close()
    if keep_shared and rank < parties:
        from veil.encrypted.mpc.model import save_weight_shares

        save_weight_shares(out, got.pop("weight_shares"), rank, parties, got["sharing_id"],
                           {"data": data})  # fmt: skip
    elif rank == 0:
        trained = load_weights(loaded.model, got.pop("weights"))
        save_model(
            out, trained, loaded.spec, classes=loaded.classes, extra=loaded.extra, force=True
        )
    if result:
        result.write_text(json.dumps(got))


def _train_kept_shared(p, parts, schedule, parties: int, out: Path, ledger_path: Path,
                       force: bool) -> None:  # fmt: skip
    """Secure training whose model stays shared: the share files, their accuracy measured by
    inference on shares against the same steps in plaintext, and the ledger."""
    import sys

    import torch

    from veil.core.errors import refuse_overwrite
    from veil.core.guarantees import Ledger, Record
    from veil.core.train import evaluate
    from veil.encrypted.mpc.model import infer_threads, save_weight_shares
    from veil.encrypted.mpc.train import guarantee, plain_sgd, pooled, train_threads

    paths = [out.with_suffix(f".party{r}.vshares") for r in range(parties)]
    for path in paths:
        refuse_overwrite(path, force)
    got = train_threads(p.model, parts, p.train.num_classes, schedule, keep_shared=True)
    meta = {"data": p.train.name, "classes": [str(c) for c in p.train.classes]}
    for r, shares in enumerate(got["weight_shares"]):
        save_weight_shares(paths[r], shares, r, parties, got["sharing_id"], meta)
    tx, ty = p.test.batch(torch.arange(len(p.test)))
    shared = infer_threads(None, tx.numpy().reshape(len(tx), -1), parties=parties,
                           weight_shares=got["weight_shares"],
                           sharing_ids=[got["sharing_id"]] * parties)  # fmt: skip
    secure_acc = float((shared["logits"].argmax(1) == ty.numpy()).mean())
    plain_acc = evaluate(plain_sgd(p.model, *pooled(parts), schedule), p.test)["accuracy"]
    traffic = got["traffic"][0]
    numbers = {"records": int(got["records"]), "test_accuracy_on_shares": secure_acc,
               "plaintext_accuracy": plain_acc, "accuracy_drop_pt": 100 * (plain_acc - secure_acc),
               "step_seconds": got["seconds"] / schedule.steps,
               "rounds_per_step": traffic["rounds"] / schedule.steps}  # fmt: skip
    run = Ledger.start(f"secure training on {p.train.name}, model kept shared",
                       command=" ".join(["veil", *sys.argv[1:]]))  # fmt: skip
    run.add(guarantee(numbers, schedule, parties=parties, keep_shared=True))
    run.record(Record("train", "mpc-train", metrics=numbers, details={"kept_shared": True}))
    run.artifacts.update({f"party{r}_shares": str(path) for r, path in enumerate(paths)})
    run.finish(status="ok")
    run.save(ledger_path)
    typer.echo(
        f"trained on shares ({parties} parties, {numbers['records']} records, "
        f"{schedule.steps} steps), model kept shared: test accuracy by inference on shares "
        f"{secure_acc:.4f} (plaintext {plain_acc:.4f}); wrote {', '.join(map(str, paths))} "
        f"and {ledger_path}"
    )


@app.command("train")
def train(
    data: str = typer.Option(..., "--data", "-d", help="Data set: split between two parties."),
    model: str = typer.Option("mlp", "--model", "-m", help="An MLP (Linear and ReLU layers)."),
    option: list[str] = typer.Option([], "--option", "-O", help="Model option KEY=VALUE."),
    steps: int = typer.Option(300, help="SGD steps."),
    batch: int = typer.Option(32, help="Records per step."),
    lr: float = typer.Option(0.2, help="Learning rate."),
    seed: int = typer.Option(0, help="Seed for the initial weights, sample and batch order."),
    limit: int = typer.Option(None, help="Train on N random records only."),
    engine: str = typer.Option("threads", help="threads or processes (one per rank, TCP)."),
    parties: int = typer.Option(2, help="Computing parties (2 or 3), each with its records."),
    out: Path = typer.Option(Path("model.veil"), "--out", "-o", help="Model file to write."),
    ledger: Path = typer.Option(None, help="Ledger to write (default: OUT with .ledger.json)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files."),
    keep_shared: bool = typer.Option(
        False,
        "--keep-shared",
        help="Nobody receives the trained model: each party keeps its weight shares "
        "(OUT.partyR.vshares, for `veil mpc infer-shared`); accuracy is then measured by "
        "inference on shares.",
    ),
) -> None:
    """Train an MLP by SGD on records secret-shared by two or three parties (each holds every
    second or third record of the data set); compare with the same steps in plaintext."""
    import tempfile
    import time

    import torch

    from veil.cli.train import check_outputs, parse_options, save_outputs
    from veil.core.errors import ConfigError
    from veil.core.guarantees import Record
    from veil.core.io import load_model, save_model
    from veil.core.train import evaluate, prepare
    from veil.encrypted.mpc.launch import train_processes
    from veil.encrypted.mpc.train import (
        Schedule,
        guarantee,
        mlp_layers,
        parts_of,
        plain_sgd,
        pooled,
        train_threads,
    )

    ledger_path = check_outputs(out, ledger, force)
    p = prepare(data, model, model_options=parse_options(option), limit=limit, seed=seed)
    mlp_layers(p.model)  # refuse what is not an MLP before any party starts
    schedule = Schedule(steps, batch, lr, seed)
    x, y = p.train.batch(torch.arange(len(p.train)))  # the records train-party samples too
    parts = parts_of(x.numpy(), y.numpy(), parties)
    if keep_shared:
        if engine != "threads":
            raise ConfigError("--keep-shared runs here with --engine threads; across machines "
                              "run `veil mpc train-party --keep-shared` on every rank")  # fmt: skip
        _train_kept_shared(p, parts, schedule, parties, out, ledger_path, force)
        return
    start = time.perf_counter()
    if engine == "threads":
        got = train_threads(p.model, parts, p.train.num_classes, schedule)
        trained, traffic = got["model"], got["traffic"][0]
    elif engine == "processes":
        with tempfile.TemporaryDirectory(prefix="veil-mpc-") as tmp:
            initial, final = Path(tmp) / "initial.veil", Path(tmp) / "trained.veil"
            save_model(initial, p.model, p.spec, classes=list(p.train.classes))
            got = train_processes(initial, data, limit, schedule, final, parties)
            trained, traffic = load_model(final).model, got["traffic"]
    else:
        raise ConfigError(f"unknown engine {engine!r}; use threads or processes")
    wall = time.perf_counter() - start
    reference = plain_sgd(p.model, *pooled(parts), schedule)
    secure_acc = evaluate(trained, p.test)["accuracy"]
    plain_acc = evaluate(reference, p.test)["accuracy"]
    numbers = {"records": int(got["records"]), "test_accuracy": secure_acc,
               "plaintext_accuracy": plain_acc, "accuracy_drop_pt": 100 * (plain_acc - secure_acc),
               "step_seconds": got["seconds"] / steps, "seconds": round(wall, 2),
               "rounds_per_step": traffic["rounds"] / steps,
               "bytes_per_step": traffic["bytes_sent"] / steps}  # fmt: skip
    p.model = trained
    record = Record("train", "mpc-train", metrics=numbers, details={"engine": engine})
    save_outputs(out, ledger_path, p, record, f"secure training {model} on {data}",
                 guarantee(numbers, schedule, parties=parties))  # fmt: skip
    typer.echo(
        f"trained on shares ({parties} parties, {engine}, {numbers['records']} records, "
        f"{steps} steps): test "
        f"accuracy {secure_acc:.4f} (plaintext {plain_acc:.4f}), {numbers['step_seconds']:.3f} "
        f"s per step; wrote {out} and {ledger_path}"
    )
