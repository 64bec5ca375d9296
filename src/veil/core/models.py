"""Reference networks by name, built for a given input shape and class count.

``build("mnist-cnn", (1, 28, 28), 10)`` returns a fresh ``nn.Module``; :class:`ModelSpec`
records what was built so that a saved model can be rebuilt exactly (see ``veil.core.io``).
No network here uses BatchNorm: it mixes examples in a batch, which breaks per-example
gradients and so DP-SGD. GroupNorm is offered instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from veil.core.errors import ModelError


class Square(nn.Module):
    """x -> x², the activation of CryptoNets: one multiplication, so homomorphic encryption can
    evaluate it (ReLU cannot be computed on CKKS ciphertexts)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


class Quadratic2(nn.Module):
    """The activation ``a x^2 + b x + c`` with fixed coefficients (e.g. fitted to ReLU): one
    multiplication, like x², for encrypted and secret-shared inference."""

    def __init__(self, a: float, b: float, c: float):
        super().__init__()
        self.a, self.b, self.c = float(a), float(b), float(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a * x * x + self.b * x + self.c


_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "square": Square,
}


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a network: its name, input shape, classes and options."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    options: dict = field(default_factory=dict)

    def build(self) -> nn.Module:
        return build(self.name, self.input_shape, self.num_classes, **self.options)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        try:
            return cls(
                d["name"],
                tuple(int(s) for s in d["input_shape"]),
                int(d["num_classes"]),
                dict(d.get("options", {})),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"bad model spec {d!r}: {e}") from e


_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    """Register ``fn(input_shape, num_classes, **options) -> nn.Module`` under ``name``."""

    def wrap(fn):
        _MODELS[name] = fn
        return fn

    return wrap


def names() -> list[str]:
    """Names of every registered network."""
    return sorted(_MODELS)


def build(name: str, input_shape: Sequence[int], num_classes: int, **options) -> nn.Module:
    """Build network ``name`` for inputs of ``input_shape`` (without batch) and ``num_classes``."""
    if name not in _MODELS:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(names())}")
    if num_classes < 2:
        raise ModelError(f"{name}: need at least 2 classes, got {num_classes}")
    shape = tuple(int(s) for s in input_shape)
    try:
        model = _MODELS[name](shape, num_classes, **options)
    except TypeError as e:
        raise ModelError(f"{name}: bad options {options}: {e}") from e
    except RuntimeError as e:
        raise ModelError(f"{name} cannot take inputs of shape {shape}: {e}") from e
    _check_forward(model, name, shape, num_classes)
    return model


def spec_of(name: str, input_shape: Sequence[int], num_classes: int, **options) -> ModelSpec:
    """The spec that :func:`build` with these arguments corresponds to."""
    return ModelSpec(name, tuple(int(s) for s in input_shape), int(num_classes), dict(options))


def _check_forward(model: nn.Module, name: str, shape: tuple[int, ...], num_classes: int) -> None:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.rand(2, *shape))
    except RuntimeError as e:
        raise ModelError(f"{name} cannot take inputs of shape {shape}: {e}") from e
    finally:
        model.train(was_training)
    if tuple(out.shape) != (2, num_classes):
        raise ModelError(f"{name} gives outputs {tuple(out.shape)}, expected (N, {num_classes})")


def _activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ModelError(f"unknown activation {name!r}; use one of {', '.join(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


def _image_shape(name: str, shape: tuple[int, ...], min_side: int) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ModelError(f"{name} needs image inputs (C, H, W), got shape {shape}; try 'mlp'")
    if min(shape[1:]) < min_side:
        raise ModelError(f"{name} needs images at least {min_side}x{min_side}, got {shape[1:]}")
    return shape  # type: ignore[return-value]


def _flat_size(features: nn.Module, shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return int(features(torch.zeros(1, *shape)).numel())


def _norm(kind: str | None, channels: int) -> list[nn.Module]:
    if kind in (None, "none"):
        return []
    if kind == "group":
        return [nn.GroupNorm(min(8, channels), channels)]
    raise ModelError(f"unknown norm {kind!r}; use 'group' or 'none' (BatchNorm breaks DP-SGD)")


@register_model("mlp")
def mlp(
    input_shape: tuple[int, ...],
    num_classes: int,
    hidden: Sequence[int] = (128, 64),
    activation: str = "relu",
) -> nn.Module:
    """A multilayer perceptron over the flattened input; ``hidden`` gives the layer widths."""
    width = int(torch.tensor(input_shape).prod())
    layers: list[nn.Module] = [nn.Flatten()]
    for h in hidden:
        layers += [nn.Linear(width, int(h)), _activation(activation)]
        width = int(h)
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


@register_model("mnist-cnn")
def mnist_cnn(
    input_shape: tuple[int, ...],
    num_classes: int,
    activation: str = "tanh",
    norm: str | None = None,
) -> nn.Module:
    """The small CNN of the DP-SGD literature (Papernot et al. 2021): tanh, no BatchNorm."""
    c, _, _ = _image_shape("mnist-cnn", input_shape, 14)
    features = nn.Sequential(
        nn.Conv2d(c, 16, 8, stride=2, padding=3),
        *_norm(norm, 16),
        _activation(activation),
        nn.MaxPool2d(2, 1),
        nn.Conv2d(16, 32, 4, stride=2),
        *_norm(norm, 32),
        _activation(activation),
        nn.MaxPool2d(2, 1),
        nn.Flatten(),
    )
    return nn.Sequential(
        features,
        nn.Linear(_flat_size(features, input_shape), 32),
        _activation(activation),
        nn.Linear(32, num_classes),
    )


@register_model("cifar-cnn")
def cifar_cnn(
    input_shape: tuple[int, ...],
    num_classes: int,
    activation: str = "tanh",
    norm: str | None = None,
    width: int = 32,
) -> nn.Module:
    """The CIFAR-10 CNN of the DP-SGD literature: three conv blocks of two convs, avg-pooled."""
    c, _, _ = _image_shape("cifar-cnn", input_shape, 8)
    layers: list[nn.Module] = []
    for w in (width, 2 * width, 4 * width):
        for _ in range(2):
            layers += [nn.Conv2d(c, w, 3, padding=1), *_norm(norm, w), _activation(activation)]
            c = w
        layers.append(nn.AvgPool2d(2))
    layers.append(nn.Flatten())
    features = nn.Sequential(*layers)
    return nn.Sequential(
        features,
        nn.Linear(_flat_size(features, input_shape), 128),
        _activation(activation),
        nn.Linear(128, num_classes),
    )


@register_model("he-mlp")
def he_mlp(input_shape: tuple[int, ...], num_classes: int, hidden: int = 128) -> nn.Module:
    """One hidden layer with x² (784-128-10 on MNIST): the HE benchmark's MLP, depth 3."""
    return mlp(input_shape, num_classes, hidden=(hidden,), activation="square")


@register_model("he-cnn")
def he_cnn(
    input_shape: tuple[int, ...], num_classes: int, channels: int = 5, hidden: int = 32
) -> nn.Module:
    """A CryptoNets-style CNN for encrypted inference: conv 5x5 stride 2, x², dense, x², dense
    (``hidden=0``: conv, x², dense).

    Every layer is linear or a square, so CKKS evaluates it exactly up to its noise; the
    convolution has 25 weights per output, which keeps encrypted cost low (veil.encrypted.he).
    """
    c, _, _ = _image_shape("he-cnn", input_shape, 5)
    features = nn.Sequential(nn.Conv2d(c, channels, 5, stride=2), Square(), nn.Flatten())
    width = _flat_size(features, input_shape)
    if not hidden:  # conv, x², dense: depth 3, the cheapest to evaluate encrypted
        return nn.Sequential(features, nn.Linear(width, num_classes))
    return nn.Sequential(
        features, nn.Linear(width, hidden), Square(), nn.Linear(hidden, num_classes)
    )


@register_model("lenet")
def lenet(
    input_shape: tuple[int, ...],
    num_classes: int,
    activation: str = "relu",
) -> nn.Module:
    """LeNet-5 (LeCun et al. 1998) with max pooling; the first conv pads so 28x28 inputs fit."""
    c, _, _ = _image_shape("lenet", input_shape, 16)
    features = nn.Sequential(
        nn.Conv2d(c, 6, 5, padding=2),
        _activation(activation),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        _activation(activation),
        nn.MaxPool2d(2),
        nn.Flatten(),
    )
    return nn.Sequential(
        features,
        nn.Linear(_flat_size(features, input_shape), 120),
        _activation(activation),
        nn.Linear(120, 84),
        _activation(activation),
        nn.Linear(84, num_classes),
    )


def _scattering(name: str, input_shape: tuple[int, ...], J: int):
    from veil.core.features import Scattering2D

    c, h, w = _image_shape(name, input_shape, 2**J * 2)
    if h != w or h % 2**J:
        raise ModelError(f"{name} needs square images with a side divisible by {2**J}, got {h}x{w}")
    return Scattering2D((c, h, w), J=J)


@register_model("scatter-cnn")
def scatter_cnn(
    input_shape: tuple[int, ...],
    num_classes: int,
    J: int = 2,
    width: int = 32,
    groups: int = 27,
    activation: str = "tanh",
) -> nn.Module:
    """A small CNN on ScatterNet features (Tramèr & Boneh 2021): scattering, GroupNorm, 2 convs.

    The scattering stage has no parameters and sees one example at a time, so DP-SGD pays
    privacy only for the CNN on top (and precomputes the features once).
    """
    scat = _scattering("scatter-cnn", input_shape, J)
    c, side, _ = scat.output_shape()
    head = nn.Sequential(
        nn.GroupNorm(math.gcd(groups, c), c),
        nn.Conv2d(c, width, 3, padding=1),
        _activation(activation),
        nn.MaxPool2d(2),
        nn.Conv2d(width, width, 3, padding=1),
        _activation(activation),
        nn.Flatten(),
    )
    flat = width * (side // 2) ** 2
    return nn.Sequential(
        scat, *head, nn.Linear(flat, 32), _activation(activation), nn.Linear(32, num_classes)
    )


@register_model("scatter-linear")
def scatter_linear(
    input_shape: tuple[int, ...], num_classes: int, J: int = 2, groups: int = 27
) -> nn.Module:
    """A linear classifier on GroupNorm-ed ScatterNet features (Tramèr & Boneh 2021)."""
    scat = _scattering("scatter-linear", input_shape, J)
    c, side, _ = scat.output_shape()
    return nn.Sequential(
        scat,
        nn.GroupNorm(math.gcd(groups, c), c),
        nn.Flatten(),
        nn.Linear(c * side * side, num_classes),
    )


def frozen_prefix(model: nn.Module) -> int:
    """How many leading modules of a Sequential are frozen feature extractors (no trainable
    parameters, one example at a time), which a trainer may precompute once per data set."""
    if not isinstance(model, nn.Sequential):
        return 0
    count = 0
    for m in model:
        if not getattr(m, "frozen_features", False) or any(p.requires_grad for p in m.parameters()):
            break
        count += 1
    return count


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
