"""Compile a torch model into what CKKS can evaluate: affine maps and quadratics.

Every supported layer is affine (Linear, Conv1d/2d, AvgPool1d/2d, Flatten, BatchNorm in eval
mode, Dropout, Identity) or a polynomial activation of degree two (:class:`Square`, or a
fitted ``a x^2 + b x + c`` as :class:`Quadratic2`). Consecutive affine layers are composed
into one matrix, so a BatchNorm folds into the layer before it and a convolution followed by
average pooling costs one level, not two. Biases are folded too: each affine stage is the
augmented map ``[W b; 0 1]`` acting on ``[x; 1]``, and the evaluator adds ``b`` as one
plaintext laid out exactly like the product, never between two multiplications (that breaks
the slot layout of TenSEAL's tutorial pattern). A quadratic ``a x^2 + b x + c`` is evaluated
as ``x (x + b/a)`` (one level) with ``a`` and ``c`` folded into the next affine map.

ReLU, max pooling and softmax are refused with the HE-friendly replacement named: the model
returns logits and the client takes the argmax after decrypting.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from veil.core.models import Quadratic2, Square
from veil.encrypted.he.ckks import HEError
from veil.encrypted.layers import AFFINE_LAYERS, Affine, leaves, probe_affine

REPLACEMENTS = {
    nn.ReLU: "train with x² (veil he fit --model he-mlp|he-cnn) or a fitted quadratic",
    nn.GELU: "a fitted quadratic or x²",
    nn.Tanh: "a fitted quadratic or x²",
    nn.Sigmoid: "a fitted quadratic",
    nn.LeakyReLU: "x² or a fitted quadratic",
    nn.MaxPool1d: "AvgPool (average pooling is linear)",
    nn.MaxPool2d: "AvgPool2d (average pooling is linear)",
    nn.Softmax: "nothing: return logits, the client takes argmax after decrypting",
    nn.LogSoftmax: "nothing: return logits, the client takes argmax after decrypting",
}


@dataclass
class Square2:
    """``y = x (x + shift)`` elementwise: one ciphertext multiplication."""

    width: int
    shift: float = 0.0
    layers: tuple[str, ...] = ()

    def apply(self, x: np.ndarray) -> np.ndarray:
        return x * (x + self.shift)


@dataclass
class Compiled:
    """A model as CKKS stages; each stage costs one multiplicative level."""

    stages: list
    input_shape: tuple[int, ...]
    num_classes: int
    source: dict = field(default_factory=dict)

    @property
    def depth(self) -> int:
        return len(self.stages)

    @property
    def input_size(self) -> int:
        return math.prod(self.input_shape)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The logits in float64, as the encrypted evaluation computes them."""
        h = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        for stage in self.stages:
            h = stage.apply(h)
        return h

    def weights(self) -> int:
        """Nonzero weights: what batched evaluation pays for per image."""
        return sum(int((s.weight != 0).sum()) for s in self.stages if isinstance(s, Affine))

    def describe(self) -> list[str]:
        out = []
        for s in self.stages:
            what = "affine {}x{}".format(*s.shape) if isinstance(s, Affine) else "x(x+c)"
            out.append(f"{what} <- {', '.join(s.layers)}")
        return out


def _refuse(name: str, module: nn.Module) -> HEError:
    for kind, fix in REPLACEMENTS.items():
        if isinstance(module, kind):
            return HEError(
                f"layer {name} ({type(module).__name__}) cannot be evaluated on CKKS "
                f"ciphertexts; use {fix}"
            )
    supported = ", ".join(k.__name__ for k in AFFINE_LAYERS) + ", Square, Quadratic2"
    return HEError(f"layer {name} ({type(module).__name__}) is not supported; use: {supported}")


def _quadratic(module: nn.Module) -> tuple[float, float, float]:
    if isinstance(module, Square):
        return 1.0, 0.0, 0.0
    return module.a, module.b, module.c


def compile_model(model: nn.Module, input_shape: tuple[int, ...]) -> Compiled:
    """Compile ``model`` (an ``nn.Sequential`` of supported layers) for ``input_shape`` inputs."""
    shape = tuple(int(s) for s in input_shape)
    stages: list = []
    pending: Affine | None = None
    for name, layer in leaves(model):
        if isinstance(layer, AFFINE_LAYERS):
            step, shape = probe_affine(layer, shape, name)
            pending = step if pending is None else pending.then(step)
        elif isinstance(layer, Square | Quadratic2):
            width = math.prod(shape)
            a, b, c = _quadratic(layer)
            if a == 0:
                step = Affine(np.eye(width) * b, np.full(width, c), (name,))
                pending = step if pending is None else pending.then(step)
                continue
            if pending is not None:
                stages.append(pending)
            stages.append(Square2(width, b / a, (name,)))
            pending = Affine(np.eye(width) * a, np.full(width, c), (name,))
        else:
            raise _refuse(name, layer)
    if pending is not None:
        stages.append(pending)  # after a final quadratic this is its scale: one more level
    if not stages:
        raise HEError("the model has no layers to evaluate")
    if len(shape) != 1:
        raise HEError(f"the model must end in a vector of logits, not shape {shape}")
    return Compiled(stages, tuple(int(s) for s in input_shape), int(shape[0]))


def torch_logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Plaintext logits of the torch model in float64 (the reference for encrypted results)."""
    m = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        return m(torch.as_tensor(np.asarray(x), dtype=torch.float64)).numpy()


def with_square_activations(spec, model: nn.Module):
    """The same network with x² in place of its activation, weights kept, to fine-tune.

    Works for reference networks built with an ``activation`` option (``mlp``, ``he-*``);
    max pooling elsewhere is still refused when compiling.
    """
    from veil.core.errors import ModelError
    from veil.core.models import ModelSpec

    new_spec = ModelSpec(
        spec.name, spec.input_shape, spec.num_classes, {**spec.options, "activation": "square"}
    )
    try:
        new = new_spec.build()
    except ModelError as e:
        raise HEError(f"{spec.name} has no activation to replace with x²: {e}") from e
    new.load_state_dict(model.state_dict())
    return new_spec, new
