"""Training recipes: a tagger from notes with gold spans, split by patient."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from veil.core.errors import ConfigError
from veil.deid.corpus import Note, read_notes, split_patients
from veil.deid.lexicon import Lexicon, default_folder


def default_notes() -> Path:
    from veil.core.data import data_dir

    return data_dir() / "deid" / "physionet-dev.text"


def load_lexicon(folder: Path | None = None) -> Lexicon:
    """The deid package's lists if installed, else an empty lexicon (said on stderr)."""
    import sys

    folder = folder or default_folder()
    if not folder.is_dir():
        print(f"note: {folder} not found; training without name/place lists", file=sys.stderr)
        return Lexicon.empty()
    return Lexicon.from_folder(folder)


def held_out_counts(
    notes: list[Note],
    lexicon: Lexicon,
    opts,
    folds: int,
    dev: list[Note] | None = None,
    grid=None,
    echo: Callable[[str], None] = print,
) -> np.ndarray:
    """Token counts of ``notes`` at each bias of ``grid``, each note scored by a tagger that
    did not train on its patient: shape (biases, notes, 3), notes in fold order.

    The patients are split into ``folds`` parts (seeded by ``opts.seed``); a tagger with
    ``opts`` trains on all parts but one (``dev`` picks its epoch when ``opts`` does not
    average weights) and decodes that one. A tagger trained on all of ``notes`` can then set
    its recall bias on them too (``Tagger.calibrate(..., pooled=...)``), not only on a dev
    split of a few patients: cross-fitting, at the price of ``folds`` more trainings of
    (folds - 1) / folds the size. The fold taggers train side by side (threads sharing
    torch's; :func:`~veil.deid.tagger.side_by_side`), each as it would alone with its share:
    as many at once as torch has threads per network (a fold's networks already train side
    by side; all folds at once, twelve threads on two cores for four folds of three networks,
    gave 1.14x over training them in turn, this 1.25x: ``bench_deid_train.py``). ``echo``
    hears each fold scored and, ``folds`` times in all, the epochs done so far.
    """
    import torch

    from veil.deid.tagger import BIASES, Tagger, side_by_side

    if folds < 2:
        raise ConfigError(f"folds must be at least 2, got {folds}")
    grid = sorted(grid or BIASES)
    parts = split_patients(notes, (1.0,) * folds, opts.seed)
    if not all(parts):
        raise ConfigError(f"{folds} folds but only {len({n.patient for n in notes})} patients")
    report, stop = EpochCount(folds, opts.epochs, echo), threading.Event()

    def fold(i: int) -> np.ndarray:
        held = {n.patient for n in parts[i]}
        rest = [n for n in notes if n.patient not in held]
        # with averaged weights dev picks nothing: not scored each epoch for progress alone
        tagger = Tagger.train(rest, lexicon, opts, None if opts.average_last else dev, report,
                              stop)  # fmt: skip
        counts = np.stack([c for _, c in tagger.sweep_counts(parts[i], grid)])
        echo(f"fold {i + 1}/{folds}: {len(parts[i])} notes scored by a tagger trained "
             "without them")  # fmt: skip
        return counts

    workers = max(1, torch.get_num_threads() // opts.networks)
    out = side_by_side(fold, list(range(folds)), stop, workers)
    return np.concatenate(out, axis=1)


class EpochCount:
    """Progress of ``taggers`` trainings of ``epochs`` epochs each, however they interleave:
    a line each time another ``taggers`` epochs are done (with their mean loss)."""

    def __init__(self, taggers: int, epochs: int, echo: Callable[[str], None]):
        self.taggers, self.total, self.echo = taggers, taggers * epochs, echo
        self.done, self.losses, self.lock = 0, [], threading.Lock()

    def __call__(self, _epoch: int, loss: float, _f1) -> None:
        with self.lock:
            self.done, self.losses = self.done + 1, [*self.losses, loss]
            if self.done % self.taggers == 0:
                mean = sum(self.losses) / len(self.losses)
                self.echo(f"cross-fitting: {self.done}/{self.total} epochs of {self.taggers} "
                          f"taggers, mean loss {mean:.3f}")  # fmt: skip
                self.losses = []


def train_tagger(
    notes: Path | list[Note] | None = None,
    *,
    epochs: int = 15,
    dev_fraction: float = 0.15,
    target_recall: float = 0.94,
    min_precision: float | None = None,
    confidence: float | None = None,
    seed: int = 0,
    folds: int = 0,
    sites: int = 1,
    theta_down: float = 0.5,
    echo: Callable[[str], None] = print,
    opts=None,
):
    """Train on all patients but a ``dev_fraction`` held out to pick the epoch and the bias.

    With ``sites`` > 1 the training patients are split into that many sites which train one
    tagger with DSSGD (:func:`veil.deid.collab.train_dssgd`, ``epochs`` rounds, θd
    ``theta_down``, Festag & Spreckelsen's other settings). The recall bias is the smallest
    reaching ``target_recall`` on dev or, with ``min_precision``, the one with the highest dev
    recall at that dev precision or more, held with ``confidence`` when it is given
    (:meth:`~veil.deid.tagger.Tagger.calibrate`). With ``folds`` (>= 2), the training
    patients count as dev notes too, each scored by one of ``folds`` more taggers trained
    without it (:func:`held_out_counts`); then ``dev_fraction`` may be 0, so that the tagger
    trains on every patient and the folds alone set its bias.
    """
    from dataclasses import replace

    from veil.deid.tagger import Options, Tagger

    if folds and sites > 1:
        raise ConfigError("cross-fitting (folds) trains on all sites' notes in one place; "
                          "it does not go with sites")  # fmt: skip
    if not 0 <= dev_fraction < 1:
        raise ConfigError(f"dev_fraction must be in [0, 1), got {dev_fraction}")
    if not dev_fraction and not folds:
        raise ConfigError("no dev patients and no folds: nothing to set the recall bias on")
    if not isinstance(notes, list):
        notes = read_notes(notes or default_notes())
    train, dev = split_patients(notes, (1 - dev_fraction, dev_fraction), seed)
    opts = replace(opts or Options(), epochs=epochs, seed=seed)
    echo(f"training on {len(train)} notes, {len(dev)} dev notes (split by patient)")
    lexicon = load_lexicon()

    def progress(epoch, loss, f1):
        shown = f", dev token F1 {f1:.3f}" if f1 is not None else ""
        echo(f"epoch {epoch}/{epochs}: loss {loss:.3f}{shown}")

    if sites > 1:
        from veil.deid.collab import train_dssgd

        def each_round(r, f1):
            echo(f"round {r}/{epochs}: dev token F1 {f1:.3f} (DSSGD, {sites} sites)")

        tagger, run = train_dssgd(train, lexicon, sites, epochs, dev, opts,
                                  {"theta_down": theta_down}, seed, each_round)  # fmt: skip
        tagger.info.update(collab={"algo": "dssgd", "sites": sites, "theta_down": theta_down,
                                   "uploaded_fraction": run.uploaded_fraction})  # fmt: skip
    else:
        tagger = Tagger.train(train, lexicon, opts, dev=dev, progress=progress)
    pooled = None
    if folds:
        echo(f"cross-fitting: {folds} taggers, each trained without a fold of the patients")
        pooled = held_out_counts(train, lexicon, opts, folds, dev, echo=echo)
    point = tagger.calibrate(dev, target_recall, min_precision=min_precision,
                             confidence=confidence, pooled=pooled)  # fmt: skip
    tagger.info.update(train_notes=len(train), dev_notes=len(dev), seed=seed)
    report = {
        "o_bias": point["o_bias"],
        "dev_token_recall": round(point["recall"], 4),
        "dev_token_precision": round(point["precision"], 4),
        "parameters": tagger.parameters(),
    }
    return tagger, report
