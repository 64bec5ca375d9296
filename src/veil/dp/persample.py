"""Per-sample gradients, clipped and summed: the part of DP-SGD that costs time.

Three engines behind one interface (``engine.clipped_sum(x, y, mask) -> ClippedSum``):

- ``layers`` (default when the model allows): one forward, one backward to the layers'
  outputs only, then per-sample gradient norms layer by layer, either materialised
  (per-sample ``G^T A``) or by the Gram-matrix "ghost norm" identity, whichever costs less,
  and the clipped sum as one weighted batch gradient. It never computes the ordinary batch
  weight gradient, so a DP step costs little more than a plain one. Supports Linear,
  Conv2d (groups=1), GroupNorm, LayerNorm and Embedding.
- ``vmap``: ``torch.func`` (``functional_call`` + ``vmap(grad)``) for any model torch.func
  can trace; the reference the others are tested against.
- ``opacus``: Opacus' ``GradSampleModule`` (hooks), for layers the others lack and as a
  cross-check; clipping and summing stay ours.

Clipping is flat (all parameters together, bound ``clip``) or per-layer (each parameter
tensor bound ``clip/sqrt(k)`` for k tensors, so the whole still has norm at most ``clip``).
Padding rows (``mask == 0``) contribute nothing, which gives fixed-shape batches.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from veil.core.errors import ConfigError, ModelError

ENGINES = ("auto", "layers", "vmap", "opacus")
_MIXING = (nn.modules.batchnorm._BatchNorm,)
_INSTANCE = (nn.modules.instancenorm._InstanceNorm,)


def check_model(model: nn.Module) -> None:
    """Refuse layers that mix the examples of a batch: per-sample gradients need independence."""
    for name, m in model.named_modules():
        if isinstance(m, _MIXING):
            raise ModelError(
                f"layer {name or '(root)'} is {type(m).__name__}, which mixes examples of a batch "
                "and breaks DP-SGD; replace it with GroupNorm "
                "(veil.dp.replace_batchnorm(model) does it)"
            )
        if isinstance(m, _INSTANCE) and m.track_running_stats:
            raise ModelError(
                f"layer {name} is {type(m).__name__} with running statistics, which pool examples;"
                " set track_running_stats=False or use GroupNorm"
            )


def replace_batchnorm(model: nn.Module, max_groups: int = 32) -> nn.Module:
    """Replace every BatchNorm in place with a GroupNorm over the same channels."""
    for name, child in model.named_children():
        if isinstance(child, _MIXING):
            c = child.num_features
            groups = math.gcd(c, max_groups)
            setattr(model, name, nn.GroupNorm(groups, c, affine=child.affine))
        else:
            replace_batchnorm(child, max_groups)
    return model


@dataclass
class ClippedSum:
    """The sum over a batch of clipped per-sample gradients (one tensor per trainable parameter),
    the per-sample norms before clipping, and the batch's summed loss and correct count."""

    grads: list[torch.Tensor]
    norms: torch.Tensor
    loss_sum: float
    correct: int
    count: int


def clip_factors(norms2: torch.Tensor, clip: float, per_layer: bool, mask=None) -> torch.Tensor:
    """Scale factors min(1, C/‖g‖): shape (B,) for flat clipping, (k, B) per layer.

    ``norms2`` is (k, B): squared per-sample norms of each of k parameter tensors.
    """
    if per_layer:
        bound = clip / math.sqrt(norms2.shape[0])
        factors = (bound / (norms2.sqrt() + 1e-6)).clamp(max=1.0)
    else:
        factors = (clip / (norms2.sum(0).sqrt() + 1e-6)).clamp(max=1.0)
    return factors if mask is None else factors * mask


def _per_param_factor(factors: torch.Tensor, i: int) -> torch.Tensor:
    return factors[i] if factors.dim() == 2 else factors


def _sum_from_samples(per_sample: list[torch.Tensor], clip, per_layer, mask):
    norms2 = torch.stack([sq_norms(g) for g in per_sample])
    factors = clip_factors(norms2, clip, per_layer, mask)
    sums = [
        (_per_param_factor(factors, i) @ g.flatten(1)).reshape(g.shape[1:])
        for i, g in enumerate(per_sample)
    ]
    return sums, norms2.sum(0).sqrt()


def _loss_stats(logits: torch.Tensor, y: torch.Tensor, mask, losses=None) -> tuple:
    """Summed loss, correct predictions and real examples of a (masked) batch."""
    if losses is None:
        losses = F.cross_entropy(logits.detach(), y, reduction="none")
    losses = losses.detach()
    hits = logits.detach().argmax(1) == y
    if mask is None:
        return float(losses.sum()), int(hits.sum()), len(y)
    return float((losses * mask).sum()), int((hits & (mask > 0)).sum()), int(mask.sum())


class Engine(ABC):
    """Common set-up: the trainable parameters, the clip bound, flat or per-layer clipping."""

    name = "base"

    def __init__(self, model: nn.Module, clip: float, per_layer: bool = False):
        if not (clip > 0):
            raise ConfigError(f"clip norm must be > 0, got {clip}")
        check_model(model)
        self.model, self.clip, self.per_layer = model, float(clip), per_layer
        self.named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.params = [p for _, p in self.named]

    @abstractmethod
    def clipped_sum(self, x, y, mask=None) -> ClippedSum:
        """Clipped per-sample gradients of (x, y) summed; rows with mask 0 count for nothing."""


class MaterialisingEngine(Engine):
    """An engine that computes every per-sample gradient, then clips and sums them."""

    @abstractmethod
    def per_sample(self, x, y) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per-sample gradients, one (B, *shape) tensor per parameter, and the logits."""

    def clipped_sum(self, x, y, mask=None) -> ClippedSum:
        per_sample, logits = self.per_sample(x, y)
        sums, norms = _sum_from_samples(per_sample, self.clip, self.per_layer, mask)
        return ClippedSum(sums, norms, *_loss_stats(logits, y, mask))


class VmapEngine(MaterialisingEngine):
    """Per-sample gradients with ``torch.func.vmap(grad(...))``; works for most models.

    ``compile=True`` runs the vmapped gradient through ``torch.compile`` with static shapes:
    give it fixed-shape (padded, masked) batches or it recompiles for every new batch size.
    """

    name = "vmap"

    def __init__(self, model, clip, per_layer=False, compile=False):
        super().__init__(model, clip, per_layer)
        from torch.func import functional_call, grad, vmap

        names = [n for n, _ in self.named]

        def one(params, buffers, x, y):
            logits = functional_call(
                self.model, (dict(zip(names, params, strict=True)), buffers), (x.unsqueeze(0),)
            )
            return F.cross_entropy(logits, y.unsqueeze(0)), logits.squeeze(0)

        self._fn = vmap(grad(one, has_aux=True), in_dims=(None, None, 0, 0), randomness="different")
        if compile:
            self._fn = torch.compile(self._fn, dynamic=False)
            self.name = "vmap+compile"

    def per_sample(self, x, y) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per-sample gradients, one (B, *shape) tensor per parameter, and the logits."""
        params = [p.detach() for p in self.params]
        buffers = dict(self.model.named_buffers())
        grads, logits = self._fn(params, buffers, x, y)
        return list(grads), logits


class OpacusEngine(MaterialisingEngine):
    """Per-sample gradients from Opacus' GradSampleModule (hooks); clipping and sums are ours."""

    name = "opacus"

    def __init__(self, model, clip, per_layer=False):
        super().__init__(model, clip, per_layer)
        try:
            from opacus import GradSampleModule
        except ImportError as e:  # pragma: no cover - opacus is in the dp extra
            raise ConfigError("engine='opacus' needs opacus: pip install 'veil[dp]'") from e
        self._gsm = GradSampleModule(model, loss_reduction="sum")

    def per_sample(self, x, y) -> tuple[list[torch.Tensor], torch.Tensor]:
        for p in self.params:
            p.grad_sample = None
            p.grad = None
        logits = self._gsm(x)
        with warnings.catch_warnings():  # Opacus' hooks warn when inputs need no gradient
            warnings.simplefilter("ignore", UserWarning)
            F.cross_entropy(logits, y, reduction="sum").backward()
        grads = [p.grad_sample for p in self.params]
        for p in self.params:
            p.grad_sample, p.grad = None, None
        return grads, logits


class UnsupportedLayer(ModelError):
    """The ``layers`` engine cannot handle this model (the ``vmap`` engine may)."""


class LayerEngine(Engine):
    """Per-layer per-sample norms and clipped sums from activations and output gradients."""

    name = "layers"
    SUPPORTED = (nn.Linear, nn.Conv2d, nn.GroupNorm, nn.LayerNorm, nn.Embedding)

    def __init__(self, model, clip, per_layer=False):
        super().__init__(model, clip, per_layer)
        owner = {}
        self.layers: list[nn.Module] = []
        for name, m in model.named_modules():
            own = [p for p in m.parameters(recurse=False) if p.requires_grad]
            if not own:
                continue
            why = _unsupported(m)
            if why:
                raise UnsupportedLayer(f"layer {name} ({type(m).__name__}): {why}")
            self.layers.append(m)
            for pname, p in m.named_parameters(recurse=False):
                if p.requires_grad:
                    owner[id(p)] = (m, pname)
        self._owner = [owner[id(p)] for p in self.params]

    def clipped_sum(self, x, y, mask=None) -> ClippedSum:
        captured: dict[nn.Module, list] = {m: [] for m in self.layers}
        hooks = [
            m.register_forward_hook(lambda mod, inp, out: captured[mod].append((inp[0], out)))
            for m in self.layers
        ]
        try:
            logits = self.model(x)
        finally:
            for h in hooks:
                h.remove()
        if any(len(v) != 1 for v in captured.values()):
            raise UnsupportedLayer(
                "a layer ran more or less than once per forward (shared weights)"
            )
        losses = F.cross_entropy(logits, y, reduction="none")
        if mask is not None:
            losses = losses * mask
        outs = [captured[m][0][1] for m in self.layers]
        grads_out = torch.autograd.grad(losses.sum(), outs)
        per_layer = {
            m: _layer_rule(m, captured[m][0][0].detach(), g)
            for m, g in zip(self.layers, grads_out, strict=True)
        }
        norms2 = torch.stack([per_layer[m].norms2[pname] for m, pname in self._owner])
        factors = clip_factors(norms2, self.clip, self.per_layer, mask)
        sums = [
            per_layer[m].weighted_sum(pname, _per_param_factor(factors, i))
            for i, (m, pname) in enumerate(self._owner)
        ]
        stats = _loss_stats(logits, y, mask, losses)  # masked losses: the mask is 0/1
        return ClippedSum(sums, norms2.sum(0).sqrt(), *stats)


def _unsupported(m: nn.Module) -> str | None:
    if not isinstance(m, LayerEngine.SUPPORTED):
        return "not a Linear, Conv2d, GroupNorm, LayerNorm or Embedding layer"
    if isinstance(m, nn.Conv2d) and (
        m.groups != 1 or isinstance(m.padding, str) or m.padding_mode != "zeros"
    ):
        return "grouped, string-padded or non-zero-padded convolutions are not supported"
    if isinstance(m, nn.Embedding) and (m.max_norm is not None or m.scale_grad_by_freq or m.sparse):
        return "max_norm, scale_grad_by_freq and sparse embeddings are not supported"
    return None


@dataclass
class _Rule:
    """Per-sample squared norms of a layer's parameters, and how to sum them clipped."""

    norms2: dict[str, torch.Tensor]
    sums: dict[str, object]  # pname -> callable(factors) -> summed gradient

    def weighted_sum(self, pname: str, factors: torch.Tensor) -> torch.Tensor:
        return self.sums[pname](factors)


def sq_norms(t: torch.Tensor) -> torch.Tensor:
    """Squared L2 norm of each row of ``t`` (B, ...) in one pass."""
    return torch.linalg.vector_norm(t.flatten(1), dim=1).square()


def _materialised(per_sample: torch.Tensor, shape, unflatten=None) -> tuple[torch.Tensor, object]:
    """Squared norms of materialised per-sample gradients and their weighted sum, reshaped to
    ``shape``, or by ``unflatten`` where the rows are not laid out in the parameter's order."""
    flat = per_sample.flatten(1)
    if unflatten is None:
        return sq_norms(flat), lambda c: (c @ flat).reshape(shape)
    return sq_norms(flat), lambda c: unflatten(c @ flat, shape)


def _bias(m, g_bias: torch.Tensor, rule: _Rule) -> None:
    if getattr(m, "bias", None) is not None and m.bias.requires_grad:
        rule.norms2["bias"], rule.sums["bias"] = _materialised(g_bias, m.bias.shape)


def _matmul_rule(m, A: torch.Tensor, G: torch.Tensor, shape) -> _Rule:
    """Per-sample grads G_b^T A_b for A (B, T, d), G (B, T, p): ghost norm or materialised."""
    B, T, d = A.shape
    p = G.shape[2]
    rule = _Rule({}, {})
    if m.weight.requires_grad:
        if T == 1:
            a, g = A[:, 0], G[:, 0]
            rule.norms2["weight"] = sq_norms(a) * sq_norms(g)
            rule.sums["weight"] = lambda c: ((g * c[:, None]).T @ a).reshape(shape)
        elif T * T * (d + p) < T * p * d:  # ghost norm: Σ_ts (a_t·a_s)(g_t·g_s)
            rule.norms2["weight"] = ((A @ A.transpose(1, 2)) * (G @ G.transpose(1, 2))).sum((1, 2))
            rule.sums["weight"] = lambda c: (
                (G * c[:, None, None]).reshape(B * T, p).T @ A.reshape(B * T, d)
            ).reshape(shape)
        else:
            rule.norms2["weight"], rule.sums["weight"] = _materialised(G.transpose(1, 2) @ A, shape)
    _bias(m, G.sum(1), rule)
    return rule


def _conv_grouped(m: nn.Conv2d, A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """Per-sample weight gradients as one grouped convolution, the batch as the groups."""
    B, out_ch = G.shape[:2]
    return torch.nn.grad.conv2d_weight(
        A.reshape(1, B * A.shape[1], *A.shape[2:]),
        (B * out_ch, A.shape[1], *m.kernel_size),
        G.reshape(1, B * out_ch, *G.shape[2:]),
        stride=m.stride,
        padding=m.padding,
        dilation=m.dilation,
        groups=B,
    ).reshape(B, -1)


# bytes of patches copied at a time on the CPU: few enough to stay in a core's cache (2 MiB
# of L2 here) until bmm reads them back. mnist-cnn's DP step (conv methods fixed to phases
# and patches), one round robin: all patches at once 1.273x the plain step; chunks of
# 512 KiB 1.239x, 1 MiB 1.218x, 2 MiB 1.224x, 4 MiB 1.236x. Computing each chunk's norms
# while its gradients are in cache as well changed nothing (1.214x against 1.212x).
PATCH_CHUNK_BYTES = 2 << 20


def _patch_bmm(a, b, shape, patches_first: bool = False) -> torch.Tensor:
    """Per-sample products ``a @ b``, (B, n) flattened, where one operand is a strided view of
    patches (``b``, or ``a`` with ``patches_first``) that ``reshape`` to ``shape`` would copy.
    On the CPU the patches are copied a chunk of samples at a time into one buffer and
    multiplied while still in cache; on other devices in one go."""
    U = a if patches_first else b
    B, per_sample = U.shape[0], math.prod(U.shape[1:]) * U.element_size()
    step = max(1, PATCH_CHUNK_BYTES // per_sample) if U.device.type == "cpu" else B
    other = b if patches_first else a
    rows, cols = (shape[0], other.shape[2]) if patches_first else (other.shape[1], shape[1])
    out = other.new_empty((B, rows, cols))
    buf = U.new_empty((min(step, B), *U.shape[1:]))
    for i in range(0, B, step):
        n = min(step, B - i)
        patches = buf[:n].copy_(U[i : i + n]).view(n, *shape)
        pair = (patches, other[i : i + n]) if patches_first else (other[i : i + n], patches)
        torch.bmm(*pair, out=out[i : i + n])
    return out.reshape(B, -1)


def _conv_patches(m: nn.Conv2d, A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """Per-sample weight gradients as G·U over a strided view of the input's patches, taken
    channels-last so that each patch row is kh·kw runs of C contiguous values: (B, O·kh·kw·C),
    in (out, kh, kw, in) order. On mnist-cnn's conv2 this took 2.4 ms in a DP step where the
    (in, kh, kw) order took 3.0 ms: the copy that lays out the patches reads whole runs."""
    ph, pw = m.padding
    if ph or pw:
        A = F.pad(A, (pw, pw, ph, ph))
    A = A.permute(0, 2, 3, 1).contiguous()
    B, C = A.shape[0], A.shape[3]
    (kh, kw), (sh, sw), (dh, dw) = m.kernel_size, m.stride, m.dilation
    Ho, Wo = G.shape[2:]
    sb, sy, sx, sc = A.stride()
    view = A.as_strided(
        (B, Ho, Wo, kh, kw, C), (sb, sy * sh, sx * sw, sy * dh, sx * dw, sc), A.storage_offset()
    )
    return _patch_bmm(G.flatten(2), view, (Ho * Wo, kh * kw * C))


def _conv_dilated(m: nn.Conv2d, A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """Per-sample weight gradients as one forward convolution: each sample's output gradients
    are the filters (dilated by the stride, strided by the dilation) over its own input, the
    batch as the groups and the input channels as the batch. Cheapest for few input channels
    (mnist-cnn's conv1, one channel: 2.8 ms in a DP step against 3.2 ms grouped)."""
    B, n_out = G.shape[:2]
    C = A.shape[1]
    kh, kw = m.kernel_size
    out = F.conv2d(
        A.transpose(0, 1),
        G.reshape(B * n_out, 1, *G.shape[2:]),
        padding=m.padding,
        stride=m.dilation,
        dilation=m.stride,
        groups=B,
    )
    out = out[..., :kh, :kw].reshape(C, B, n_out, kh, kw)
    return out.permute(1, 2, 0, 3, 4).reshape(B, -1)


def _conv_phases(m: nn.Conv2d, A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """Per-sample weight gradients as U·Gᵀ, the patches U laid out so that each copied run
    is a whole row of output positions: the padded input is split into its stride phases
    (one small copy), in which a kernel row at offset a reads rows y + a. The rows come out
    in (in, row phase, column phase, kh/sh, kw/sw) order, the columns are the outputs.
    Only for dilation 1 and kernels that the stride divides (``_phases_fit``). On mnist-cnn's
    conv1 (one channel, 8x8, stride 2): 1.40 ms timed alone against 1.72 ms for ``patches``,
    whose copied runs are 8 values long where these are 14; inside whole DP steps the gain
    shrinks to 0.5% of the step (1.230x against 1.237x the plain step, round robin)."""
    (ph, pw), (sh, sw) = m.padding, m.stride
    (kh, kw), (Ho, Wo) = m.kernel_size, G.shape[2:]
    B, C, H, W = A.shape
    Hq, Wq = -(-(H + 2 * ph) // sh), -(-(W + 2 * pw) // sw)  # phase sizes, padded up
    A = F.pad(A, (pw, Wq * sw - W - pw, ph, Hq * sh - H - ph))
    P = A.reshape(B, C, Hq, sh, Wq, sw).permute(0, 1, 3, 5, 2, 4).contiguous()
    sb, sc, sy, sx = P.stride()[:4]
    U = P.as_strided((B, C, sh, sw, kh // sh, kw // sw, Ho, Wo), (sb, sc, sy, sx, Wq, 1, Wq, 1))
    return _patch_bmm(U, G.flatten(2).transpose(1, 2), (C * kh * kw, Ho * Wo), patches_first=True)


def _phases_fit(m: nn.Conv2d) -> bool:
    (kh, kw), (sh, sw) = m.kernel_size, m.stride
    return m.dilation == (1, 1) and kh % sh == 0 and kw % sw == 0


def _from_phases(flat: torch.Tensor, shape, stride) -> torch.Tensor:
    n_out, C, kh, kw = shape
    sh, sw = stride
    flat = flat.reshape(C, sh, sw, kh // sh, kw // sw, n_out)
    return flat.permute(5, 0, 3, 1, 4, 2).reshape(shape)  # (out, in, kh/sh, sh, kw/sw, sw)


def _from_channels_last(flat: torch.Tensor, shape, stride) -> torch.Tensor:
    n_out, C, kh, kw = shape
    return flat.reshape(n_out, kh, kw, C).permute(0, 3, 1, 2).contiguous()


class _ConvMethod(NamedTuple):
    """A way to form a conv layer's per-sample weight gradients, (B, n)."""

    per_sample: Callable[[nn.Conv2d, torch.Tensor, torch.Tensor], torch.Tensor]
    # how a summed (n,) gradient becomes the weight's shape, given the shape and the stride,
    # where the method's order is not the weight's
    unflatten: Callable | None = None
    fits: Callable[[nn.Conv2d], bool] = lambda m: True  # which layers the method can take


_CONV_METHODS = {
    "grouped": _ConvMethod(_conv_grouped),
    "patches": _ConvMethod(_conv_patches, _from_channels_last),
    "dilated": _ConvMethod(_conv_dilated),
    "phases": _ConvMethod(_conv_phases, _from_phases, _phases_fit),
}
_TRIALS = 3  # timed calls of each method, in real steps, before the fastest is kept
_conv_choice: dict[tuple, str] = {}  # layer shape -> the method kept
_conv_trials: dict[tuple, dict[str, list[float]]] = {}  # layer shape -> times so far


def _conv_per_sample(m: nn.Conv2d, A: torch.Tensor, G: torch.Tensor) -> tuple[str, torch.Tensor]:
    """Per-sample weight gradients by the fastest method for this layer's shapes.

    The methods agree to float precision, but which is fastest depends on the shape, the
    machine and what the step around it left in the caches: timed alone, two methods tied on
    mnist-cnn's conv1 that differed by 0.3-0.7 ms inside a step. So the first steps try each
    method in turn, ``_TRIALS`` times, timing each call where it really runs, and then the
    fastest (by its best time, robust to noise) is kept for the rest of the process.
    """
    key = (A.device.type, tuple(A.shape), tuple(G.shape), m.kernel_size, m.stride, m.padding,
           m.dilation)  # fmt: skip
    if key in _conv_choice:
        name = _conv_choice[key]
        return name, _CONV_METHODS[name].per_sample(m, A, G)
    trials = _conv_trials.setdefault(
        key, {name: [] for name, method in _CONV_METHODS.items() if method.fits(m)}
    )
    name = min(trials, key=lambda n: len(trials[n]))
    _sync(A)
    start = time.perf_counter()
    flat = _CONV_METHODS[name].per_sample(m, A, G)
    _sync(A)
    trials[name].append(time.perf_counter() - start)
    if all(len(t) >= _TRIALS for t in trials.values()):
        _conv_choice[key] = min(trials, key=lambda n: min(trials[n]))
        _conv_trials.pop(key, None)
    return name, flat


def _sync(t: torch.Tensor) -> None:
    if t.is_cuda:  # kernels run asynchronously: time them to completion
        torch.cuda.synchronize(t.device)


def _conv_materialised(m: nn.Conv2d, name: str, flat: torch.Tensor) -> tuple[torch.Tensor, object]:
    """Squared norms and weighted sum of the per-sample gradients method ``name`` formed."""
    unflatten = _CONV_METHODS[name].unflatten
    if unflatten is not None:
        unflatten = functools.partial(unflatten, stride=m.stride)
    return _materialised(flat, m.weight.shape, unflatten)


def _conv_rule(m: nn.Conv2d, A: torch.Tensor, G: torch.Tensor) -> _Rule:
    """Per-sample conv weight gradients, materialised (for these small networks that beat
    Gram-matrix ghost norms, measured on mnist-cnn), by the fastest of the methods that fit it."""
    rule = _Rule({}, {})
    if m.weight.requires_grad:
        rule.norms2["weight"], rule.sums["weight"] = _conv_materialised(
            m, *_conv_per_sample(m, A, G)
        )
    _bias(m, G.flatten(2).sum(2), rule)
    return rule


def _layer_rule(m: nn.Module, A: torch.Tensor, G: torch.Tensor) -> _Rule:
    B = G.shape[0]
    if isinstance(m, nn.Linear):
        return _matmul_rule(
            m, A.reshape(B, -1, A.shape[-1]), G.reshape(B, -1, G.shape[-1]), m.weight.shape
        )
    if isinstance(m, nn.Conv2d):
        return _conv_rule(m, A, G)
    if isinstance(m, nn.GroupNorm | nn.LayerNorm):
        if isinstance(m, nn.GroupNorm):
            xhat = F.group_norm(A, m.num_groups, eps=m.eps)
            reduce = lambda t: t.flatten(2).sum(2)  # noqa: E731  (B, C)
        else:
            xhat = F.layer_norm(A, m.normalized_shape, eps=m.eps)
            k = len(m.normalized_shape)
            reduce = lambda t: t.reshape(B, -1, *t.shape[t.dim() - k :]).sum(1)  # noqa: E731
        rule = _Rule({}, {})
        if m.weight is not None and m.weight.requires_grad:
            rule.norms2["weight"], rule.sums["weight"] = _materialised(
                reduce(xhat * G), m.weight.shape
            )
        _bias(m, reduce(G), rule)
        return rule
    return _embedding_rule(m, A, G)


def _embedding_rule(m: nn.Embedding, idx: torch.Tensor, G: torch.Tensor) -> _Rule:
    B = G.shape[0]
    idx = idx.reshape(B, -1)
    g = G.reshape(B, idx.shape[1], -1)
    if m.padding_idx is not None:
        g = g * (idx != m.padding_idx).unsqueeze(-1)
    same = (idx[:, :, None] == idx[:, None, :]).to(g.dtype)
    norms2 = (same * (g @ g.transpose(1, 2))).sum((1, 2))

    def total(c):
        out = torch.zeros_like(m.weight)
        return out.index_add_(0, idx.reshape(-1), (g * c[:, None, None]).reshape(-1, g.shape[-1]))

    return _Rule({"weight": norms2}, {"weight": total})


def make_engine(
    model: nn.Module,
    clip: float,
    engine: str = "auto",
    per_layer: bool = False,
    compile: bool = False,
):
    """The engine named ``engine``; ``auto`` is ``layers`` where the model allows, else ``vmap``.

    ``compile`` takes the ``vmap`` engine through ``torch.compile`` (``auto`` included).
    """
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    if compile:
        if engine not in ("auto", "vmap"):
            raise ConfigError(f"compile=True works with the vmap engine, not {engine!r}")
        return VmapEngine(model, clip, per_layer, compile=True)
    if engine == "auto":
        try:
            return LayerEngine(model, clip, per_layer)
        except UnsupportedLayer:
            return VmapEngine(model, clip, per_layer)
    cls = {"layers": LayerEngine, "vmap": VmapEngine, "opacus": OpacusEngine}[engine]
    return cls(model, clip, per_layer)
