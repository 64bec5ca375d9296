"""Plain training and evaluation loops, seeded, with progress; other packages reuse them.

Batches come straight from an :class:`ArrayDataset` by index gather (no DataLoader worker
processes): for the small in-memory sets veil trains on, that is several times faster.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from veil.core.data import ArrayDataset
from veil.core.errors import ConfigError
from veil.core.progress import progress

OPTIMIZERS = ("sgd", "adam")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch generator for shuffling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` is CUDA when present, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def batches(
    dataset: ArrayDataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(inputs, labels)`` batches of ``dataset``, reshuffled on each call if asked."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    n = len(dataset)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        yield dataset.batch(order[start : start + batch_size])


def make_optimizer(
    model: nn.Module, name: str, lr: float, momentum: float = 0.9, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """``sgd`` (with momentum) or ``adam`` over the model's trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if lr <= 0:
        raise ConfigError(f"learning rate must be > 0, got {lr}")
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ConfigError(f"unknown optimizer {name!r}; use one of {', '.join(OPTIMIZERS)}")


def history_curves(history: list[dict]) -> dict[str, list[float]]:
    """Per-epoch rows ({"epoch": 1, "train_loss": ...}) as one list per metric, for plots."""
    keys = [k for k in (history[0] if history else {}) if k != "epoch"]
    return {k: [float(h[k]) for h in history] for k in keys}


@dataclass
class TrainResult:
    """Per-epoch history (losses, accuracies, seconds) and the final evaluation."""

    history: list[dict] = field(default_factory=list)
    final: dict = field(default_factory=dict)
    seconds: float = 0.0
    device: str = "cpu"

    def curves(self) -> dict[str, list[float]]:
        """History as one list per metric, for plots."""
        return history_curves(self.history)

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def evaluate(
    model: nn.Module, dataset: ArrayDataset, batch_size: int = 1024, device="auto"
) -> dict[str, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on ``dataset``."""
    device = pick_device(device)
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for x, y in batches(dataset, batch_size):
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    model.train(was_training)
    n = max(len(dataset), 1)
    return {"loss": loss_sum / n, "accuracy": correct / n, "n": len(dataset)}


@torch.no_grad()
def precompute(prefix: nn.Module, dataset: ArrayDataset, batch_size: int = 256) -> ArrayDataset:
    """``dataset`` passed through a frozen feature extractor once (features as float32)."""
    prefix.eval()
    feats = torch.cat([prefix(x) for x, _ in batches(dataset, batch_size)])
    return ArrayDataset(
        feats,
        dataset.targets,
        classes=dataset.classes,
        name=dataset.name,
        split=dataset.split,
        keys=dataset.keys,
    )


def split_frozen(model: nn.Module, *datasets):
    """The trainable part of ``model`` and ``datasets`` passed through its frozen prefix.

    When ``model`` starts with frozen feature extractors (see ``models.frozen_prefix``),
    their output is computed once per data set instead of at every step; training the
    rest trains ``model`` itself (the modules are shared). Otherwise nothing changes.
    """
    from veil.core.models import frozen_prefix

    k = frozen_prefix(model)
    if not k:
        return model, datasets
    prefix, head = model[:k], model[k:]
    return head, tuple(None if d is None else precompute(prefix, d) for d in datasets)


@torch.no_grad()
def per_class_accuracy(model: nn.Module, dataset: ArrayDataset, batch_size: int = 1024) -> list:
    """Accuracy on each class of ``dataset`` (None for a class with no example)."""
    model.eval()
    dev = next(model.parameters()).device
    correct = torch.zeros(dataset.num_classes)
    for x, y in batches(dataset, batch_size):
        hits = (model(x.to(dev)).argmax(1).cpu() == y).float()
        correct.index_add_(0, y, hits)
    counts = dataset.class_counts()
    return [round(float(c) / n, 4) if n else None for c, n in zip(correct, counts, strict=True)]


def fit(
    model: nn.Module,
    train: ArrayDataset,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 0.05,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    seed: int = 0,
    eval_data: ArrayDataset | None = None,
    device: str = "auto",
    quiet: bool | None = None,
) -> TrainResult:
    """Train ``model`` on ``train`` with cross-entropy; evaluate on ``eval_data`` each epoch."""
    if epochs < 1:
        raise ConfigError(f"epochs must be at least 1, got {epochs}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    generator = seed_everything(seed)
    dev = pick_device(device)
    model.to(dev).train()
    opt = make_optimizer(model, optimizer, lr, momentum, weight_decay)
    result, start = TrainResult(device=str(dev)), time.perf_counter()
    steps_per_epoch = -(-len(train) // batch_size)
    with progress(f"training {train.name}", epochs * steps_per_epoch, quiet) as bar:
        for epoch in range(1, epochs + 1):
            t0, loss_sum, correct = time.perf_counter(), 0.0, 0
            for x, y in batches(train, batch_size, shuffle=True, generator=generator):
                x, y = x.to(dev), y.to(dev)
                opt.zero_grad(set_to_none=True)
                logits = model(x)
                loss = nn.functional.cross_entropy(logits, y)
                loss.backward()
                opt.step()
                loss_sum += loss.item() * len(y)
                correct += int((logits.argmax(1) == y).sum())
                bar.advance()
            row = {
                "epoch": epoch,
                "train_loss": loss_sum / len(train),
                "train_accuracy": correct / len(train),
            }
            if eval_data is not None:
                ev = evaluate(model, eval_data, device=dev)
                row |= {"test_loss": ev["loss"], "test_accuracy": ev["accuracy"]}
            row["seconds"] = time.perf_counter() - t0
            result.history.append(row)
            bar.note(f"loss {row['train_loss']:.3f}")
    result.seconds = time.perf_counter() - start
    if eval_data is not None:
        result.final = evaluate(model, eval_data, device=dev)
    return result


def training_record(step: str, *, final: dict, curves: dict, details: dict):
    """The ledger Record of a training run: final test metrics and per-epoch curves."""
    from veil.core.guarantees import Record

    metrics = {f"test_{k}": v for k, v in final.items() if k != "n"}
    return Record("train", step, metrics=metrics, curves=curves, details=details)


@dataclass
class Prepared:
    """A fresh network built by name for a data set loaded by name."""

    model: nn.Module
    spec: object  # veil.core.models.ModelSpec
    train: ArrayDataset
    test: ArrayDataset
    subset: dict = field(default_factory=dict)  # how the training examples were picked

    def details(self, seconds: float, device: str) -> dict:
        return {
            "data": self.train.name,
            "model": self.spec.name,
            "n_train": len(self.train),
            "n_test": len(self.test),
            "seconds": round(seconds, 3),
            "device": device,
        }


def prepare(
    data: str,
    model: str,
    *,
    model_options: dict | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> Prepared:
    """Load data set ``data`` (train and test) and build network ``model`` for it, seeded.

    ``limit`` keeps a random (seeded) ``limit`` training examples, for quick runs.
    """
    from veil.core import data as data_mod
    from veil.core import models

    train_ds, test_ds = data_mod.load(data, "train"), data_mod.load(data, "test")
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"limit must be at least 1, got {limit}")
        # a seeded random subset: files such as MNIST's are sorted by class, so no prefix
        train_ds = train_ds.subset(data_mod.sample_indices(len(train_ds), limit, seed))
    spec = models.spec_of(
        model, train_ds.input_shape, train_ds.num_classes, **(model_options or {})
    )
    seed_everything(seed)  # the same seed gives the same initial weights
    return Prepared(spec.build(), spec, train_ds, test_ds, {"limit": limit, "seed": seed})


@dataclass
class Trained(Prepared):
    """A network trained by name on a data set by name."""

    result: TrainResult = field(default_factory=TrainResult)

    def record(self, step: str):
        """The ledger Record of this training run."""
        details = self.details(self.result.seconds, self.result.device)
        return training_record(
            step, final=self.result.final, curves=self.result.curves(), details=details
        )


def train_named(
    data: str,
    model: str,
    *,
    model_options: dict | None = None,
    limit: int | None = None,
    **fit_options,
) -> Trained:
    """:func:`prepare` network ``model`` for data set ``data``, then :func:`fit` it."""
    p = prepare(
        data, model, model_options=model_options, limit=limit, seed=fit_options.get("seed", 0)
    )
    result = fit(p.model, p.train, eval_data=p.test, **fit_options)
    return Trained(p.model, p.spec, p.train, p.test, p.subset, result)
