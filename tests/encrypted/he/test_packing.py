"""Encrypted evaluation under batch and vector packing (veil.encrypted.he.packing)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from veil.core.models import Square
from veil.encrypted.he import (
    Context,
    HEError,
    Quadratic2,
    VectorEvaluator,
    VectorPlan,
    compile_model,
    evaluate_batch,
    layout_vectors,
    torch_logits,
)
from veil.encrypted.he.packing import batch_columns


def _bound(ctx: Context, logits: np.ndarray) -> float:
    """Error allowed: 2^22 units of the scale, relative to the logits' size."""
    return 2.0 ** (22 - ctx.params.scale_bits) * (1 + np.abs(logits).max())


def _models():
    torch.manual_seed(1)
    yield nn.Sequential(nn.Linear(10, 6), Square(), nn.Linear(6, 3)), (10,)
    yield (
        nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), Square(), nn.Flatten(), nn.Linear(18, 4)),
        (1, 7, 7),
    )
    yield nn.Sequential(nn.Flatten(), nn.Linear(16, 20), Square(), nn.Linear(20, 5)), (1, 4, 4)
    yield nn.Sequential(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4, 3)), (1, 4, 4)
    bn = nn.BatchNorm1d(3)
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2)
    yield (
        nn.Sequential(
            nn.Conv1d(1, 3, 3), bn, Quadratic2(0.3, 0.5, 0.1), nn.Flatten(), nn.Linear(18, 4)
        ).eval(),
        (1, 8),
    )


CASES = list(_models())


@pytest.fixture(scope="module", params=range(len(CASES)))
def case(request):
    model, shape = CASES[request.param]
    compiled = compile_model(model, shape)
    ctx = Context.for_model(compiled)
    x = np.random.default_rng(request.param).normal(size=(5, *shape))
    return model, compiled, ctx, x, torch_logits(model, x)


def test_batch_logits_match_plaintext(case):
    _, compiled, ctx, x, ref = case
    cts = [ctx.encrypt(c) for c in batch_columns(x, ctx.params.slots)]
    out = evaluate_batch(ctx.public(), compiled, cts)
    got = np.stack([ctx.decrypt(c)[: len(x)] for c in out], axis=1)
    assert np.abs(got - ref).max() < _bound(ctx, ref)


def test_vector_logits_match_plaintext(case):
    _, compiled, ctx, x, ref = case
    plan = VectorPlan(compiled, ctx.params.slots)
    evaluator = VectorEvaluator(ctx.public(), plan)
    for image, want in zip(x[:2], ref[:2], strict=True):
        ct = evaluator.run([ctx.encrypt(v) for v in layout_vectors(plan.public(), image)])
        assert np.abs(ctx.decrypt(ct)[: compiled.num_classes] - want).max() < _bound(ctx, ref)


def test_convolution_is_gathered_not_rotated():
    model, shape = CASES[1]
    plan = VectorPlan(compile_model(model, shape), 4096)
    assert plan.gather is not None and len(plan.gather[0]) == 9
    dense = VectorPlan(compile_model(*CASES[0]), 4096)
    assert dense.gather is None


def test_vector_needs_its_rotation_keys():
    model, shape = CASES[0]
    compiled = compile_model(model, shape)
    ctx = Context.for_model(compiled, packing=("batch",))
    with pytest.raises(HEError, match="rotation keys"):
        VectorEvaluator(ctx.public(), VectorPlan(compiled, ctx.params.slots))


def test_batch_refuses_wrong_ciphertext_count(case):
    _, compiled, ctx, _, _ = case
    with pytest.raises(HEError, match="ciphertexts"):
        evaluate_batch(
            ctx.public(), compiled, [ctx.encrypt(np.zeros(1))] * (compiled.input_size + 1)
        )
