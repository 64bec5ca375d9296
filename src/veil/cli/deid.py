"""``veil deid``: find PHI in clinical notes and replace it with surrogates, masks or Xs.

The shipped tagger (char-CNN + BiLSTM-CRF with high-precision rules) works with no training;
``veil deid train`` fits your own, ``veil deid eval`` scores one on notes with gold spans.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import typer

app = typer.Typer(
    help=__doc__.split("\n\n")[0].removeprefix("``veil deid``: "), no_args_is_help=True
)


def read_key(path: Path | None) -> bytes | None:
    """The surrogate key from ``path`` (hex or raw, at least 16 bytes) or $VEIL_DEID_KEY."""
    from veil.deid.deidentify import DeidError

    if path is None:
        env = os.environ.get("VEIL_DEID_KEY")
        raw = env.encode() if env else None
        where = "$VEIL_DEID_KEY"
    else:
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise DeidError(f"cannot read key file {path}: {e}") from e
        where = str(path)
    if raw is None:
        return None
    try:
        key = bytes.fromhex(raw.decode().strip())
    except (UnicodeDecodeError, ValueError):
        key = raw
    if len(key) < 16:
        raise DeidError(f"{where}: the key must be at least 16 bytes (32 hex digits)")
    return key


def _inputs(source: Path, out: Path | None) -> list[tuple[Path, Path | None]]:
    from veil.deid.deidentify import DeidError

    if source.is_dir():
        files = sorted(p for p in source.rglob("*.txt") if p.is_file())
        if not files:
            raise DeidError(f"{source} holds no .txt files")
        if out is None:
            raise DeidError("a folder of notes needs --out FOLDER")
        return [(p, out / p.relative_to(source)) for p in files]
    if not source.is_file():
        raise DeidError(f"{source} does not exist")
    return [(source, out)]


@app.command("text")
def text(
    source: Path = typer.Argument(
        ...,
        help="A text file, a folder of .txt files, or a "
        "PhysioNet .text file of records; '-' reads stdin.",
    ),
    out: Path = typer.Option(
        None, "--out", "-o", help="Output file or folder (stdout if omitted or '-' for one file)."
    ),
    mode: str = typer.Option("surrogate", help="surrogate, mask or redact."),
    model: Path = typer.Option(None, help="Tagger file (default: the one shipped with veil)."),
    key_file: Path = typer.Option(
        None,
        help="Secret surrogate key (hex); without it, "
        "$VEIL_DEID_KEY, else a random key for this run only.",
    ),
    patient: str = typer.Option(
        "-", help="Patient id for plain text (keys surrogates and the date shift)."
    ),
    keep_weekday: bool = typer.Option(False, help="Shift dates by whole weeks."),
    spans: Path = typer.Option(
        None, help="Also write what was replaced (JSON lines, offsets only, never the PHI text)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite outputs."),
) -> None:
    """De-identify SOURCE and write the result."""
    from veil.core.errors import refuse_overwrite
    from veil.core.io import atomic_write
    from veil.deid.deidentify import Deidentifier, load_tagger

    key = read_key(key_file)
    if key is None and mode == "surrogate":
        typer.echo(
            "note: no key given; surrogates are consistent within this run only "
            "(pass --key-file to keep them across runs)",
            err=True,
        )
    deid = Deidentifier(load_tagger(model), mode, key, keep_weekday)
    if out is not None and str(out) == "-":  # the usual spelling of stdout, not a file "-"
        out = None
    if str(source) == "-":
        for block in deid.stream(sys.stdin, patient):
            sys.stdout.write(block.text)
        return
    log = []
    for src, dst in _inputs(source, out):
        if dst is not None:
            refuse_overwrite(dst, force)
        records = _one(deid, src, dst, patient)
        log.extend({"file": str(src), **r} for r in records)
        if dst is not None:
            typer.echo(
                f"{src} -> {dst}: {sum(len(r['replaced']) for r in records)} PHI spans replaced",
                err=True,
            )
    if spans is not None:
        refuse_overwrite(spans, force)
        atomic_write(spans, "".join(json.dumps(r) + "\n" for r in log))


def _one(deid, path: Path, dst: Path | None, patient: str) -> list[dict]:
    """De-identify one file into ``dst`` (stdout if None); plain text is streamed."""
    from veil.deid.corpus import read_physionet
    from veil.deid.deidentify import Result

    with path.open("rb") as f:
        physionet = b"START_OF_RECORD=" in f.read(4096)
    with _output(dst) as write:
        if physionet:
            notes = read_physionet(path)
            results = deid.notes(notes)
            for i, (n, r) in enumerate(zip(notes, results, strict=True)):
                head = f"START_OF_RECORD={n.patient}||||{n.note}||||\n"
                write(("\n" if i else "") + head + r.text + "||||END_OF_RECORD\n")
            return [_record(r, n.patient, n.note) for n, r in zip(notes, results, strict=True)]
        replaced = []
        for block in deid.stream(_lines(path), patient):
            write(block.text)
            replaced.extend(block.replacements)
    if path.stat().st_size == 0:
        typer.echo(f"warning: {path} is empty", err=True)
    return [_record(Result("", replaced), patient, path.name)]


def _lines(path: Path):
    """Lines of a UTF-8 file, read as they are needed; bad bytes are an error naming the line."""
    from veil.core.errors import DataError

    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as e:
                byte = raw[e.start]
                raise DataError(f"{path} line {number}: not UTF-8 (byte {byte:#04x})") from e


@contextmanager
def _output(dst: Path | None):
    """A text writer to ``dst`` (atomic: the file appears complete or not at all) or stdout."""
    from veil.core.io import atomic_writer

    if dst is None:
        yield sys.stdout.write
        return
    with atomic_writer(dst) as f:
        yield lambda text: f.write(text.encode())


def _record(result, patient: str, note: str) -> dict:
    return {
        "patient": patient,
        "note": note,
        "replaced": [
            [r.start, r.end, r.new_start, r.new_end, r.label] for r in result.replacements
        ],
    }


@app.command("eval")
def evaluate(
    notes: Path = typer.Argument(..., help="PhysioNet .text file or .jsonl with gold spans."),
    phrases: Path = typer.Argument(None, help="The .phrase file (default: beside NOTES)."),
    model: Path = typer.Option(None, help="Tagger file (default: the shipped one)."),
    rules_only: bool = typer.Option(False, help="Score the rules alone."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON only."),
    bootstrap: int = typer.Option(1000, help="Bootstrap draws for 95% intervals (0: none)."),
    compare: bool = typer.Option(False, help="Also score the rules alone and Presidio."),
    spacy_model: str = typer.Option(
        None, help="With --compare: an installed spaCy pipeline for Presidio's NER."
    ),
) -> None:
    """Score the tagger on notes with gold PHI spans (token and entity level)."""
    from veil.deid import rules
    from veil.deid.corpus import read_notes
    from veil.deid.deidentify import load_tagger
    from veil.deid.evaluate import evaluate as score

    gold = read_notes(notes, phrases)
    if not any(n.spans for n in gold):
        from veil.deid.deidentify import DeidError

        raise DeidError(f"{notes} has no gold PHI spans: pass its .phrase file (or JSONL spans)")
    detect = (lambda notes: [rules.spans(n.text) for n in notes]) if rules_only else None
    found = detect(gold) if detect else load_tagger(model).predict(gold)
    result = score(gold, found, bootstrap)
    result["detector"] = "rules" if rules_only else str(model or "shipped tagger")
    if compare:
        from veil.deid.presidio import baseline_scores

        result["compare"] = baseline_scores(gold, spacy_model)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(
        f"{result['notes']} notes, {result['gold_spans']} gold PHI spans ({result['detector']})"
    )
    ci = result["token_ci95"] or {}
    for k in ("recall", "precision", "f1"):
        lo, hi = ci.get(k, (None, None))
        band = f"  [{lo:.3f}, {hi:.3f}]" if lo is not None else ""
        typer.echo(f"token {k:9s} {result['token_' + k]:.3f}{band}")
    typer.echo(
        f"entity strict F1 {result['entity_strict_f1']:.3f}, overlap F1 "
        f"{result['entity_overlap_f1']:.3f}"
    )
    for label, r in result["category_recall"].items():
        typer.echo(f"  recall {label:14s} {r:.3f}")
    for name, r in result.get("compare", {}).items():
        typer.echo(
            f"{name}: token recall {r['token_recall']:.3f}, precision "
            f"{r['token_precision']:.3f}, F1 {r['token_f1']:.3f}"
        )


@app.command("train")
def train(
    notes: Path = typer.Option(
        None,
        help="Training notes (.text with .phrase beside, or "
        ".jsonl); default: $VEIL_DATA/deid/physionet-dev.text.",
    ),
    out: Path = typer.Option(Path("tagger.veil"), "--out", "-o", help="Tagger file to write."),
    epochs: int = typer.Option(20, help="Training epochs (DSSGD: rounds)."),
    sites: int = typer.Option(1, min=1, help="Sites that train together (split by patient)."),
    algo: str = typer.Option("dssgd", help="How sites train together: dssgd."),
    theta_down: float = typer.Option(0.5, help="DSSGD: fraction of parameters downloaded."),
    dev_fraction: float = typer.Option(
        0.15,
        help="Patients held out to pick the epoch and the recall bias (0 with --folds: "
        "train on every patient, the folds set the bias).",
    ),
    target_recall: float = typer.Option(0.94, help="Dev token recall the bias is set for."),
    min_precision: float = typer.Option(
        None,
        min=0.0,
        max=1.0,
        help="Instead of --target-recall: the bias with the highest dev recall whose dev "
        "precision is at least this.",
    ),
    confidence: float = typer.Option(
        None,
        min=0.5,
        max=0.999,
        help="With --min-precision: the floor must hold with this confidence when the dev "
        "notes are resampled (a bootstrap lower bound; e.g. 0.9), not just on the dev notes.",
    ),
    seed: int = typer.Option(0, help="Seed of the split and the network."),
    folds: int = typer.Option(
        0,
        min=0,
        help="Also set the bias on the training patients, each scored by one of this many "
        "more taggers trained without its fold (cross-fitting; e.g. 4: four more trainings "
        "of 3/4 the size, side by side). 0: on the dev patients alone.",
    ),
    miss_cost: float = typer.Option(
        None,
        min=0.0,
        help="Training cost of a missed PHI token (softmax-margin; default 4; 0: "
        "the plain likelihood).",
    ),
    subwords: bool = typer.Option(
        None,
        "--subwords/--no-subwords",
        help="Pretrained subword vectors (MiniLM's WordPiece embeddings, shipped with veil) "
        "as token features; default: on.",
    ),
    average_last: int = typer.Option(
        None,
        min=0,
        help="Keep the mean weights of the last this many epochs instead of the epoch with "
        "the best dev F1 (the dev patients then only set the bias); default 0: the best epoch.",
    ),
    networks: int = typer.Option(
        None,
        min=1,
        help="Train this many networks (seeds --seed, --seed + 1, ...) side by side and tag "
        "with the mean of their scores: steadier recall, about that many times the training "
        "work; default 1 (the benchmark's recipe: 3).",
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite --out."),
) -> None:
    """Train a PHI tagger on notes with gold spans, split by patient."""
    from veil.core.errors import refuse_overwrite
    from veil.deid.deidentify import DeidError
    from veil.deid.tagger import Options
    from veil.deid.train import train_tagger

    if algo != "dssgd":
        raise DeidError(f"unknown algorithm {algo!r}; sites train together with dssgd")
    if confidence is not None and min_precision is None:
        raise DeidError("--confidence is the confidence of --min-precision: give both")
    refuse_overwrite(out, force)
    chosen = {"miss_cost": miss_cost, "subwords": subwords, "average_last": average_last,
              "networks": networks}  # fmt: skip
    tagger, report = train_tagger(
        notes,
        epochs=epochs,
        dev_fraction=dev_fraction,
        target_recall=target_recall,
        min_precision=min_precision,
        confidence=confidence,
        seed=seed,
        folds=folds,
        sites=sites,
        theta_down=theta_down,
        echo=typer.echo,
        opts=Options(epochs=epochs, **{k: v for k, v in chosen.items() if v is not None}),
    )
    tagger.save(out, force=force)
    typer.echo(json.dumps(report))
    typer.echo(f"wrote {out}")
