"""Per-sample gradients: each engine equals a naive per-example loop and Opacus; clipping."""

import copy

import pytest
import torch
from torch import nn

from veil.core.errors import ConfigError, ModelError
from veil.dp import persample
from veil.dp.persample import (
    LayerEngine,
    OpacusEngine,
    UnsupportedLayer,
    VmapEngine,
    check_model,
    clip_factors,
    make_engine,
    replace_batchnorm,
)


class Tokens(nn.Module):
    """Embedding + LayerNorm + Linear over a short sequence (no LSTM)."""

    def __init__(self, padding_idx=None):
        super().__init__()
        self.emb = nn.Embedding(20, 6, padding_idx=padding_idx)
        self.norm = nn.LayerNorm(6)
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        return self.out(self.norm(self.emb(x))).mean(1)


def _conv():
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=2, padding=1),
        nn.GroupNorm(2, 4),
        nn.Tanh(),
        nn.Conv2d(4, 5, 2, dilation=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(5 * 2 * 2, 3),
    )


MODELS = {
    "linear": (
        lambda: nn.Sequential(nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 3)),
        lambda b: torch.randn(b, 7),
    ),
    "conv-groupnorm": (_conv, lambda b: torch.randn(b, 2, 8, 8)),
    "embedding": (Tokens, lambda b: torch.randint(0, 20, (b, 5))),
}


def _naive(model, x, y):
    """Per-example gradients by a loop of ordinary backward passes."""
    out = []
    for i in range(len(x)):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        out.append([p.grad.detach().clone() for p in model.parameters()])
    return [torch.stack(gs) for gs in zip(*out, strict=True)]


@pytest.fixture(params=sorted(MODELS))
def case(request):
    torch.manual_seed(0)
    build, inputs = MODELS[request.param]
    model = build().double()
    x = inputs(6)
    x = x.double() if x.is_floating_point() else x
    return model, x, torch.randint(0, 3, (6,))


def test_vmap_and_opacus_per_sample_equal_naive(case):
    model, x, y = case
    naive = _naive(model, x, y)
    for engine_cls in (VmapEngine, OpacusEngine):
        grads, _ = engine_cls(copy.deepcopy(model), clip=1.0).per_sample(x, y)
        for g, ref in zip(grads, naive, strict=True):
            assert (g - ref).abs().max() <= 1e-6


@pytest.mark.parametrize("per_layer", [False, True])
def test_all_engines_agree_on_norms_and_clipped_sums(case, per_layer):
    model, x, y = case
    naive = _naive(model, x, y)
    norms = torch.stack([g.flatten(1).pow(2).sum(1) for g in naive])
    factors = clip_factors(norms, 0.05, per_layer)
    expected = [
        torch.einsum("b,b...->...", factors[i] if per_layer else factors, g)
        for i, g in enumerate(naive)
    ]
    for name in ("layers", "vmap", "opacus"):
        out = make_engine(copy.deepcopy(model), 0.05, name, per_layer).clipped_sum(x, y)
        assert torch.allclose(out.norms, norms.sum(0).sqrt(), atol=1e-9), name
        for g, ref in zip(out.grads, expected, strict=True):
            assert (g - ref).abs().max() <= 1e-6, name


CONVS = {
    "mnist-cnn first layer": (dict(in_channels=1, out_channels=3, kernel_size=8, stride=2,
                                   padding=3), (28, 28)),
    "mnist-cnn second layer": (dict(in_channels=3, out_channels=4, kernel_size=4, stride=2),
                               (13, 13)),
    "uneven stride, dilation": (dict(in_channels=2, out_channels=3, kernel_size=(4, 3),
                                     stride=(2, 3), padding=(1, 2), dilation=(1, 2)), (9, 11)),
    "stride 1, uneven padding": (dict(in_channels=3, out_channels=2, kernel_size=(3, 2),
                                      padding=(1, 0)), (6, 7)),
    "strides dividing the kernel": (dict(in_channels=2, out_channels=3, kernel_size=(4, 3),
                                         stride=(2, 3), padding=(2, 1)), (9, 10)),
}  # fmt: skip


@pytest.mark.parametrize("conv", sorted(CONVS))
@pytest.mark.parametrize("method", sorted(persample._CONV_METHODS))
def test_every_conv_method_gives_the_per_sample_gradients(conv, method):
    # the engine times the methods and keeps the faster, so each is checked here on its own
    kwargs, size = CONVS[conv]
    m = nn.Conv2d(**kwargs).double()
    per_sample = persample._CONV_METHODS[method].per_sample
    if not persample._CONV_METHODS[method].fits(m):
        assert method == "phases" and conv == "uneven stride, dilation"
        return
    torch.manual_seed(0)
    A = torch.randn(5, m.in_channels, *size, dtype=torch.double)
    G = torch.randn_like(m(A))
    naive = torch.stack([
        torch.nn.grad.conv2d_weight(A[i : i + 1], m.weight.shape, G[i : i + 1], stride=m.stride,
                                    padding=m.padding, dilation=m.dilation)
        for i in range(len(A))
    ])  # fmt: skip
    flat = per_sample(m, A, G)
    assert flat.shape == (len(A), m.weight.numel())
    norms2, weighted_sum = persample._conv_materialised(m, method, flat)
    assert torch.allclose(norms2, naive.flatten(1).pow(2).sum(1), rtol=1e-12, atol=0)
    for i in range(len(A)):  # each sample alone, in the weight's order
        one = torch.zeros(len(A), dtype=torch.double)
        one[i] = 1
        assert (weighted_sum(one) - naive[i]).abs().max() <= 1e-9
    # the weighted sum the engine forms in the method's own order lands in the weight's order
    c = torch.rand(len(A), dtype=torch.double)
    expected = (c[:, None, None, None, None] * naive).sum(0)
    assert (weighted_sum(c) - expected).abs().max() <= 1e-9


@pytest.mark.parametrize("method", ["patches", "phases"])
@pytest.mark.parametrize("samples_per_chunk", [1, 2])
def test_patches_copied_in_chunks_give_the_same_gradients(monkeypatch, method, samples_per_chunk):
    # 5 samples in chunks of 1, and of 2 + 2 + 1: every chunk boundary, and a short last chunk
    m = nn.Conv2d(2, 3, (4, 3), stride=(2, 3), padding=(2, 1)).double()
    torch.manual_seed(4)
    A = torch.randn(5, 2, 9, 10, dtype=torch.double)
    G = torch.randn_like(m(A))
    per_sample = persample._CONV_METHODS[method].per_sample
    whole = per_sample(m, A, G)
    patch_bytes = 2 * 4 * 3 * 5 * 4 * 8  # in channels * kernel * output positions * float64
    monkeypatch.setattr(persample, "PATCH_CHUNK_BYTES", samples_per_chunk * patch_bytes + 7)
    calls, bmm = [], torch.bmm

    def counted_bmm(*args, **kwargs):
        calls.append(args[0].shape[0])
        return bmm(*args, **kwargs)

    monkeypatch.setattr(torch, "bmm", counted_bmm)
    chunked = per_sample(m, A, G)
    assert calls == [samples_per_chunk] * (5 // samples_per_chunk) + [1] * (5 % samples_per_chunk)
    assert (chunked - whole).abs().max() <= 1e-12


def test_conv_methods_are_tried_in_real_steps_then_the_fastest_is_kept():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.Flatten(), nn.Linear(18, 3)).double()
    x, y = torch.randn(7, 1, 7, 7, dtype=torch.double), torch.randint(0, 3, (7,))  # own shape
    engine = make_engine(model, 1.0, "layers")
    fitting = [n for n, method in persample._CONV_METHODS.items() if method.fits(model[0])]
    assert "phases" not in fitting  # kernel 3, stride 2: the stride does not divide the kernel
    n = len(fitting) * persample._TRIALS
    first = engine.clipped_sum(x, y)
    for _ in range(n - 2):
        out = engine.clipped_sum(x, y)  # a different method each call, the same sums
        for a, b in zip(out.grads, first.grads, strict=True):
            assert (a - b).abs().max() <= 1e-12
    (key,) = [k for k in persample._conv_trials if k[1] == tuple(x.shape)]
    tries = sorted(len(t) for t in persample._conv_trials[key].values())
    assert tries == [n // len(tries) - 1] + [n // len(tries)] * (len(tries) - 1)
    engine.clipped_sum(x, y)
    assert key not in persample._conv_trials
    assert persample._conv_choice[key] in fitting


def test_embedding_padding_index_has_no_gradient():
    # Opacus 1.6 gives the padding row a per-sample gradient (measured: norms up to 16x too
    # large here); the layers and vmap engines follow torch, which gives it none.
    torch.manual_seed(1)
    model = Tokens(padding_idx=0).double()
    x, y = torch.randint(0, 4, (6, 5)), torch.randint(0, 3, (6,))
    naive = _naive(model, x, y)
    norms = torch.stack([g.flatten(1).pow(2).sum(1) for g in naive]).sum(0).sqrt()
    for name in ("layers", "vmap"):
        out = make_engine(copy.deepcopy(model), 1e9, name).clipped_sum(x, y)
        assert torch.allclose(out.norms, norms, atol=1e-9), name
        assert (out.grads[0][0] == 0).all()


def test_clipping_bounds_every_sample(case):
    model, x, y = case
    engine = make_engine(model, 0.01, "layers")
    for i in range(len(x)):
        single = engine.clipped_sum(x[i : i + 1], y[i : i + 1])
        total = torch.sqrt(sum(g.pow(2).sum() for g in single.grads))
        assert total <= 0.01 * (1 + 1e-6)
    norms2 = torch.rand(4, 50) * 10
    for per_layer in (False, True):
        f = clip_factors(norms2, 1.0, per_layer)
        clipped = (norms2 * (f**2 if per_layer else f[None] ** 2)).sum(0).sqrt()
        assert (clipped <= 1.0 + 1e-5).all()


def test_no_clipping_equals_plain_gradient(case):
    model, x, y = case
    out = make_engine(model, float("inf"), "layers").clipped_sum(x, y)
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y, reduction="sum").backward()
    for g, p in zip(out.grads, model.parameters(), strict=True):
        assert torch.allclose(g, p.grad, atol=1e-10)


def test_mask_drops_padding_rows(case):
    model, x, y = case
    engine = make_engine(model, 0.5, "layers")
    full = engine.clipped_sum(x[:4], y[:4])
    padded = engine.clipped_sum(x, y, mask=torch.tensor([1.0, 1, 1, 1, 0, 0]).double())
    assert padded.count == 4
    for a, b in zip(full.grads, padded.grads, strict=True):
        assert torch.allclose(a, b, atol=1e-12)


def test_batchnorm_refused_with_named_layer_and_fix():
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
    with pytest.raises(ModelError, match=r"layer 1 is BatchNorm2d.*GroupNorm"):
        check_model(model)
    with pytest.raises(ModelError):
        make_engine(model, 1.0)
    fixed = replace_batchnorm(model)
    assert isinstance(fixed[1], nn.GroupNorm) and fixed[1].num_channels == 8
    check_model(fixed)


def test_auto_falls_back_to_vmap_for_unsupported_layers():
    model = nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Flatten(), nn.Linear(4 * 36, 2))
    with pytest.raises(UnsupportedLayer, match="layer 0"):
        LayerEngine(model, 1.0)
    assert make_engine(model, 1.0).name == "vmap"
    with pytest.raises(ConfigError):
        make_engine(model, 0.0)
    with pytest.raises(ConfigError):
        make_engine(model, 1.0, "fast")


def test_compiled_vmap_matches_eager():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    eager = make_engine(copy.deepcopy(model), 0.5, "vmap").clipped_sum(x, y)
    compiled = make_engine(copy.deepcopy(model), 0.5, compile=True)
    assert compiled.name == "vmap+compile"
    out = compiled.clipped_sum(x, y, mask=torch.ones(8))
    for a, b in zip(eager.grads, out.grads, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    with pytest.raises(ConfigError, match="vmap"):
        make_engine(model, 1.0, "layers", compile=True)
