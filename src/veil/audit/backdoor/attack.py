"""Train a backdoored model (BadNets, Random Backdoor, BaN, c-BaN) and measure the attack.

Each step replaces a ``rate`` share of the batch with triggered copies relabelled to a
target. For BaN and c-BaN the generator then takes a step of its own on the backdoor loss
against the just-updated model (Salem et al. 2020's alternating training).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from veil.audit.backdoor.triggers import TriggerSet, default_size
from veil.core.data import ArrayDataset
from veil.core.errors import ConfigError
from veil.core.progress import progress
from veil.core.train import batches, evaluate, make_optimizer, seed_everything


@dataclass(frozen=True)
class AttackConfig:
    """A backdoor attack: ``method``, ``targets``, poisoning ``rate``, trigger ``size``,
    and the training schedule of the backdoored model."""

    method: str = "random"
    targets: tuple[int, ...] = (0,)
    rate: float = 0.1
    size: int | None = None  # trigger side; None: a fifth of the image side (6 on MNIST)
    epochs: int = 2
    batch_size: int = 64
    lr: float = 0.05
    optimizer: str = "sgd"
    generator_lr: float = 1e-3  # BaN / c-BaN: Adam on the trigger generator
    diversity: float = 1.0  # BaN/c-BaN: weight of the term that keeps patterns apart
    seed: int = 0

    def __post_init__(self):
        if not 0 < self.rate < 1:
            raise ConfigError(f"poisoning rate must be in (0, 1), got {self.rate}")
        if self.epochs < 1 or self.batch_size < 2:
            raise ConfigError("epochs must be >= 1 and batch_size >= 2")


@dataclass
class Backdoored:
    """The backdoored model, its triggers, and what was measured."""

    model: nn.Module
    triggers: TriggerSet
    config: AttackConfig
    clean_accuracy: float = 0.0
    attack_success: float = 0.0
    per_target: dict = field(default_factory=dict)
    seconds: float = 0.0

    def record(self, step: str):
        """The ledger record of the attack: clean accuracy, success per target, settings."""
        from veil.core.guarantees import Record

        cfg = self.config
        settings = {**cfg.__dict__, "targets": list(cfg.targets), "size": self.triggers.size}
        return Record(
            "backdoor-attack",
            step,
            metrics={"test_accuracy": self.clean_accuracy, "attack_success": self.attack_success},
            details={
                "config": settings,
                "per_target": {str(k): v for k, v in self.per_target.items()},
                "seconds": round(self.seconds, 2),
            },
        )


def _poison(x, triggers: TriggerSet, rate: float, gen: torch.Generator):
    """The first ``rate`` share of the batch, and a target drawn for each of them."""
    m = max(1, round(rate * len(x)))
    pick = torch.tensor(triggers.targets)[torch.randint(len(triggers.targets), (m,), generator=gen)]
    return x[:m], pick


def train_backdoored(
    model: nn.Module,
    train: ArrayDataset,
    test: ArrayDataset,
    cfg: AttackConfig,
    quiet: bool | None = None,
) -> Backdoored:
    """Train ``model`` on ``train`` with a ``cfg.method`` backdoor; measure it on ``test``."""
    start = time.perf_counter()
    gen = seed_everything(cfg.seed)
    size = cfg.size or default_size(train.input_shape)
    triggers = TriggerSet(cfg.method, train.input_shape, list(cfg.targets), size, train.num_classes)
    opt = make_optimizer(model, cfg.optimizer, cfg.lr)
    g_opt = (
        torch.optim.Adam(triggers.generator.parameters(), lr=cfg.generator_lr)
        if triggers.generator
        else None
    )
    steps = cfg.epochs * -(-len(train) // cfg.batch_size)
    model.train()
    with progress(f"backdoor ({cfg.method}) on {train.name}", steps, quiet) as bar:
        for _ in range(cfg.epochs):
            for x, y in batches(train, cfg.batch_size, shuffle=True, generator=gen):
                base, target = _poison(x, triggers, cfg.rate, gen)
                with torch.no_grad():
                    poisoned = triggers.apply(base, target, gen)
                opt.zero_grad(set_to_none=True)
                logits = model(torch.cat([x[len(base) :], poisoned]))
                nn.functional.cross_entropy(logits, torch.cat([y[len(base) :], target])).backward()
                opt.step()
                if g_opt is not None:  # the generator learns triggers this model obeys
                    g_opt.zero_grad(set_to_none=True)
                    loss = nn.functional.cross_entropy(
                        model(triggers.apply(base, target, gen)), target
                    )
                    if cfg.diversity:  # BaN and c-BaN: keep the patterns apart
                        loss = loss - cfg.diversity * triggers.spread(len(base), gen)
                    loss.backward()
                    g_opt.step()
                    model.zero_grad(set_to_none=True)
                bar.advance()
    model.eval()
    out = Backdoored(model, triggers, cfg, evaluate(model, test, device="cpu")["accuracy"])
    out.per_target = attack_success(model, test, triggers, seed=cfg.seed + 1)
    out.attack_success = sum(out.per_target.values()) / len(out.per_target)
    out.seconds = time.perf_counter() - start
    return out


@torch.no_grad()
def attack_success(
    model: nn.Module, test: ArrayDataset, triggers: TriggerSet, seed: int = 1
) -> dict[int, float]:
    """Per target: the share of test inputs of other classes that a fresh trigger turns
    into that target (the attack success rate)."""
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    rates = {}
    for t in triggers.targets:
        hit = total = 0
        for x, y in batches(test, 1024):
            keep = y != t
            x = x[keep]
            target = torch.full((len(x),), t)
            pred = model(triggers.apply(x, target, gen)).argmax(1)
            hit += int((pred == t).sum())
            total += len(x)
        rates[t] = hit / max(total, 1)
    return rates
