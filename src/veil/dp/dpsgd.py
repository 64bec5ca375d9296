"""DP-SGD (Abadi et al. 2016): Poisson sampling, per-sample clipping, Gaussian noise, tight ε.

Each step samples every training example independently with probability q (true Poisson
sampling, as the accountant assumes), splits the sampled examples into physical chunks of
at most ``physical_batch`` (virtual batches: memory stays bounded at any logical batch
size), sums the clipped per-sample gradients over the chunks, adds N(0, σ²C²) noise once,
and divides by the expected batch size qN. ``fixed_shape=True`` pads every chunk to
``physical_batch`` rows with masked padding, so shapes never change (for ``torch.compile``);
padding changes neither the sample nor the accounting.

Threat model: the adversary sees every intermediate model and may choose all other
training records; the training code, the noise and the sampling randomness are trusted and
secret (with a fixed ``noise_seed`` they are reproducible, for experiments only).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from veil.core.data import ArrayDataset
from veil.core.errors import ConfigError
from veil.core.guarantees import Guarantee
from veil.core.progress import progress
from veil.core.train import (
    evaluate,
    history_curves,
    make_optimizer,
    pick_device,
    seed_everything,
    split_frozen,
)
from veil.dp.accounting import (
    Accountant,
    GaussianEvent,
    calibrate_sigma,
    check_delta_for,
    epsilon_curve,
)
from veil.dp.persample import make_engine

THREAT_MODEL = (
    "the adversary sees the final and every intermediate model and may choose all other "
    "training records; the training code, the noise and the sampling randomness are trusted "
    "and kept secret"
)


@dataclass
class DPConfig:
    """DP-SGD settings. Give a target ``epsilon`` (σ is calibrated) or a noise ``sigma``."""

    epsilon: float | None = 3.0
    delta: float = 1e-5
    sigma: float | None = None
    clip: float = 1.0
    epochs: float = 10
    batch_size: int = 256
    lr: float = 0.5
    optimizer: str = "sgd"
    momentum: float = 0.9
    physical_batch: int = 512
    engine: str = "auto"
    per_layer: bool = False
    fixed_shape: bool = False
    compile: bool = False
    accountant: str = "pld"
    ema: float | None = None
    noise_seed: int | None = None
    seed: int = 0

    def validate(self, n: int) -> None:
        if self.epsilon is None and self.sigma is None:
            raise ConfigError("give a target epsilon or a noise multiplier sigma")
        if self.epsilon is not None and not self.epsilon > 0:
            raise ConfigError(f"epsilon must be > 0, got {self.epsilon}")
        if self.sigma is not None and not self.sigma > 0:
            raise ConfigError(f"sigma must be > 0, got {self.sigma}")
        if not self.clip > 0 or math.isinf(self.clip):
            raise ConfigError(f"clip norm must be a positive finite number, got {self.clip}")
        if not 0 < self.batch_size <= n:
            raise ConfigError(
                f"batch_size must be in 1..{n} (the data size), got {self.batch_size}"
            )
        if self.epochs <= 0 or self.physical_batch < 1 or self.lr <= 0:
            raise ConfigError("epochs, physical_batch and lr must be positive")
        if self.ema is not None and not 0 < self.ema < 1:
            raise ConfigError(f"ema decay must be in (0, 1), got {self.ema}")
        check_delta_for(self.delta, n)

    def plan(self, n: int, account: bool = True) -> tuple[float, int, float, float | None]:
        """Sampling rate q, number of steps, noise multiplier σ, and the ε they give (None
        when ``account`` is False and σ is given: a caller that accounts for itself)."""
        self.validate(n)
        q = self.batch_size / n
        steps = max(1, round(self.epochs / q))
        if self.sigma is None:
            sigma = calibrate_sigma(self.epsilon, q, steps, self.delta, self.accountant)
        else:
            sigma = self.sigma
        if not account and self.sigma is not None:
            return q, steps, sigma, None
        eps = Accountant(self.accountant).add(GaussianEvent(sigma, q, steps)).epsilon(self.delta)
        return q, steps, sigma, eps


@dataclass
class DPResult:
    """The trained model, its guarantee, and the run's history."""

    model: nn.Module
    guarantee: Guarantee | None  # None when trained with account=False
    history: list[dict] = field(default_factory=list)
    epsilon_curve: list[list[float]] = field(default_factory=list)
    final: dict = field(default_factory=dict)
    seconds: float = 0.0
    steps: int = 0

    def curves(self) -> dict[str, list[float]]:
        return history_curves(self.history)


def _noise_generator(seed: int | None, device) -> tuple[torch.Generator, str]:
    gen = torch.Generator(device=device)
    if seed is None:
        gen.manual_seed(int.from_bytes(os.urandom(8), "big") & ((1 << 63) - 1))
        return gen, "seeded from os.urandom (64 bits)"
    gen.manual_seed(seed)
    return gen, f"fixed seed {seed} (reproducible: experiments only)"


def _chunks(idx: torch.Tensor, size: int, fixed: bool):
    """Physical chunks of the sampled indices; with ``fixed`` each is padded to ``size`` rows."""
    for start in range(0, max(len(idx), 1), size):
        part = idx[start : start + size]
        if not fixed:
            if len(part):
                yield part, None
            continue
        mask = torch.zeros(size)
        mask[: len(part)] = 1.0
        yield torch.cat([part, part.new_zeros(size - len(part))]), mask


def _epsilon_curve(cfg: DPConfig, sigma: float, q: float, steps: int, points: int = 12):
    marks = sorted({max(1, round(steps * i / points)) for i in range(1, points + 1)})
    values = epsilon_curve(sigma, q, marks, cfg.delta, cfg.accountant)
    return [[t, e] for t, e in zip(marks, values, strict=True)]


@dataclass
class NoisyStep:
    """One DP-SGD update: clipped per-sample sums over physical chunks, noise once, /qN, step."""

    engine: object  # a veil.dp.persample.Engine
    optimizer: torch.optim.Optimizer
    sigma: float
    expected_batch: float
    generator: torch.Generator
    physical_batch: int = 512
    fixed_shape: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __call__(self, data: ArrayDataset, sampled: torch.Tensor) -> tuple[float, int, int]:
        """Update the model from the examples at ``sampled``; return loss sum, correct, count."""
        return self.apply(
            (*data.batch(idx), mask)
            for idx, mask in _chunks(sampled, self.physical_batch, self.fixed_shape)
        )

    def apply(self, chunks) -> tuple[float, int, int]:
        """Update the model from ``(x, y, mask)`` chunks that together form one logical batch."""
        params, dev = self.engine.params, self.device
        totals, loss_sum, correct, count = None, 0.0, 0, 0
        for x, y, mask in chunks:
            out = self.engine.clipped_sum(
                x.to(dev), y.to(dev), None if mask is None else mask.to(dev)
            )
            if totals is None:
                totals = out.grads  # fresh tensors from the engine: ours to add into
            else:
                for total, g in zip(totals, out.grads, strict=True):
                    total.add_(g)
            loss_sum, correct, count = (
                loss_sum + out.loss_sum,
                correct + out.correct,
                count + out.count,
            )
        if totals is None:
            totals = [torch.zeros_like(p) for p in params]
        if self.sigma:  # one draw for all parameters: N(0, σ²C²) per coordinate
            noise = torch.randn(sum(p.numel() for p in params), generator=self.generator).to(dev)
            parts = noise.split([t.numel() for t in totals])
            views = [part.view_as(t) for part, t in zip(parts, totals, strict=True)]
            torch._foreach_add_(totals, views, alpha=self.sigma * self.engine.clip)
        torch._foreach_div_(totals, self.expected_batch)
        for p, total in zip(params, totals, strict=True):
            p.grad = total
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_sum, correct, count


class WeightAverage:
    """Exponential moving average of the parameters, kept beside training.

    Averaging released iterates is post-processing: it costs no privacy, and it smooths
    the noise DP-SGD adds (De et al. 2022 use it for their state-of-the-art results).
    """

    def __init__(self, params: list[torch.Tensor], decay: float):
        self.params, self.decay = params, decay
        self.average = [p.detach().clone() for p in params]

    def update(self) -> None:
        with torch.no_grad():
            for avg, p in zip(self.average, self.params, strict=True):
                avg.mul_(self.decay).add_(p.detach(), alpha=1 - self.decay)

    def swap(self) -> None:
        """Exchange the live and the averaged weights (call twice to undo)."""
        with torch.no_grad():
            for avg, p in zip(self.average, self.params, strict=True):
                tmp = p.detach().clone()
                p.copy_(avg)
                avg.copy_(tmp)


def poisson_sample(n: int, q: float, generator: torch.Generator) -> torch.Tensor:
    """Indices of the examples drawn, each independently with probability ``q``."""
    return torch.nonzero(torch.rand(n, generator=generator) < q).squeeze(1)


def train(
    model: nn.Module,
    data: ArrayDataset,
    config: DPConfig | None = None,
    *,
    eval_data: ArrayDataset | None = None,
    ledger=None,
    step: str = "",
    device: str = "auto",
    quiet: bool | None = None,
    account: bool = True,
    **overrides,
) -> DPResult:
    """Train ``model`` on ``data`` with DP-SGD; return it with its ``Guarantee``.

    Example::

        from veil import dp
        from veil.core import data, models

        train, test = data.load("mnist", "train"), data.load("mnist", "test")
        net = models.build("mnist-cnn", train.input_shape, 10)
        result = dp.train(net, train, epsilon=3.0, delta=1e-5, epochs=10, eval_data=test)
        print(result.guarantee.claim)        # (3, 1e-05)-DP for each training example

    Keyword ``overrides`` set :class:`DPConfig` fields. With ``ledger`` given, the guarantee
    is appended to it. ``account=False`` (with σ given) skips the accounting: no guarantee,
    no ε curve; for callers that account for many calls at once (DSSGD's local DP-SGD).
    """
    cfg = config or DPConfig()
    for key, value in overrides.items():
        if not hasattr(cfg, key):
            raise ConfigError(f"unknown DP-SGD setting {key!r}")
        setattr(cfg, key, value)
    n = len(data)
    q, steps, sigma, eps = cfg.plan(n, account)
    seed_everything(cfg.seed)
    dev = pick_device(device)
    full = model.to(dev)
    model, (data, eval_data) = split_frozen(full, data, eval_data)  # features once, not per step
    model.train()
    engine = make_engine(model, cfg.clip, cfg.engine, cfg.per_layer, cfg.compile)
    fixed = cfg.fixed_shape or cfg.compile  # compiled code wants one shape: pad every chunk
    gen, noise_source = _noise_generator(cfg.noise_seed, "cpu")
    update = NoisyStep(
        engine,
        make_optimizer(model, cfg.optimizer, cfg.lr, cfg.momentum),
        sigma,
        q * n,
        gen,
        cfg.physical_batch,
        fixed,
        dev,
    )
    ema = WeightAverage(engine.params, cfg.ema) if cfg.ema else None
    steps_per_epoch = max(1, round(1 / q))
    history, start, stats = [], time.perf_counter(), [0.0, 0, 0, time.perf_counter()]
    title = f"DP-SGD on {data.name}" + (f" (ε={eps:.3g})" if eps is not None else "")
    with progress(title, steps, quiet) as bar:
        for t in range(1, steps + 1):
            loss_sum, correct, count = update(data, poisson_sample(n, q, gen))
            if ema:
                ema.update()
            stats = [stats[0] + loss_sum, stats[1] + correct, stats[2] + count, stats[3]]
            bar.advance()
            if t % steps_per_epoch == 0 or t == steps:
                if ema:  # evaluate what will be released: the averaged weights
                    ema.swap()
                history.append(_epoch_row(len(history) + 1, stats, model, eval_data, dev))
                if ema and t != steps:
                    ema.swap()
                stats = [0.0, 0, 0, time.perf_counter()]
                bar.note(f"acc {history[-1].get('test_accuracy', float('nan')):.3f}")
    final = evaluate(model, eval_data, device=dev) if eval_data is not None else {}
    if eps is None:
        return DPResult(full, None, history, [], final, time.perf_counter() - start, steps)
    curve = _epsilon_curve(cfg, sigma, q, steps)
    guarantee = _guarantee(
        cfg, n, q, steps, sigma, eps, final, curve, engine.name, noise_source, step
    )
    if ledger is not None:
        ledger.add(guarantee)
    return DPResult(full, guarantee, history, curve, final, time.perf_counter() - start, steps)


def _epoch_row(epoch: int, stats, model, eval_data, dev) -> dict:
    loss_sum, correct, count, t0 = stats
    row = {
        "epoch": epoch,
        "train_loss": loss_sum / max(count, 1),
        "train_accuracy": correct / max(count, 1),
    }
    if eval_data is not None:
        ev = evaluate(model, eval_data, device=dev)
        row |= {"test_loss": ev["loss"], "test_accuracy": ev["accuracy"]}
        model.train()
    row["seconds"] = time.perf_counter() - t0
    return row


def _guarantee(cfg, n, q, steps, sigma, eps, final, curve, engine, noise_source, step) -> Guarantee:
    rdp = Accountant("rdp").add(GaussianEvent(sigma, q, steps)).epsilon(cfg.delta)
    numbers = {"epsilon": eps, "delta": cfg.delta}
    if "accuracy" in final:
        numbers["test_accuracy"] = final["accuracy"]
    return Guarantee(
        guarantee="training-data",
        mechanism="DP-SGD",
        claim=f"({eps:.3g}, {cfg.delta:g})-DP for each training example (add or remove one)",
        threat_model=THREAT_MODEL,
        parameters={
            "sigma": sigma,
            "q": q,
            "steps": steps,
            "clip": cfg.clip,
            "n": n,
            "expected_batch": cfg.batch_size,
            "epochs": cfg.epochs,
            "sampling": "Poisson",
            "clipping": "per-layer" if cfg.per_layer else "flat",
            "accountant": cfg.accountant,
            "engine": engine,
            "optimizer": cfg.optimizer,
            "lr": cfg.lr,
            "noise": noise_source,
            "weight_average": cfg.ema,
        },
        numbers=numbers,
        evidence={"epsilon_curve": curve, "epsilon_rdp": rdp},
        step=step,
    )
