"""Private inference of torch models on shares (veil.encrypted.mpc.model, launch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from veil.core.models import Square
from veil.encrypted.mpc.model import SharedModel, compile_shared, infer_threads
from veil.encrypted.mpc.ring import MPCError


def _model(kind):
    torch.manual_seed(0)
    if kind == "conv":
        return nn.Sequential(
            nn.Conv2d(1, 3, 3, stride=2), nn.ReLU(), nn.AvgPool2d(1), nn.Flatten(), nn.Linear(12, 4)
        ), (1, 5, 5)
    if kind == "square":
        return nn.Sequential(nn.Flatten(), nn.Linear(10, 8), Square(), nn.Linear(8, 3)), (10,)
    return nn.Sequential(
        nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)
    ), (10,)


@pytest.mark.parametrize("parties", [2, 3])
@pytest.mark.parametrize("kind", ["mlp", "conv", "square"])
def test_logits_on_shares_match_plaintext(kind, parties):
    model, shape = _model(kind)
    shared = compile_shared(model, shape)
    x = np.random.default_rng(1).normal(size=(40, *shape))
    out = infer_threads(shared, x, parties=parties, input_range=(-6.0, 6.0))
    assert out["compare_bits"] == 32  # small weights: interval bounds allow 32-bit comparisons
    assert len(out["traffic"]) == parties
    plain = shared.forward(x)
    assert np.abs(out["logits"] - plain).max() < 1e-2
    assert np.array_equal(out["logits"].argmax(1), plain.argmax(1))


def test_architecture_round_trip_carries_no_weights():
    shared = compile_shared(*_model("mlp"))
    rows = shared.architecture()
    assert rows.shape == (6, 8) and rows.dtype == torch.int64
    shapes_only = SharedModel.from_architecture(rows)
    assert [type(s) for s in shapes_only.stages] == [type(s) for s in shared.stages]
    assert all(not s.weight.any() for s in shapes_only.stages if hasattr(s, "weight"))


def test_max_pooling_on_shares_matches_torch():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(12, 4), nn.ReLU(), nn.Linear(4, 3))  # fmt: skip
    shared = compile_shared(model, (1, 6, 6))
    x = np.random.default_rng(3).normal(size=(25, 1, 6, 6))
    with torch.no_grad():
        want = model(torch.as_tensor(x, dtype=torch.float32)).numpy()
    assert np.abs(shared.forward(x) - want).max() < 1e-4
    out = infer_threads(shared, x, input_range=(-6.0, 6.0))
    assert np.abs(out["logits"] - want).max() < 1e-2
    three = infer_threads(shared, x, labels_only=True, parties=3, compare_bits=64)
    assert np.array_equal(three["labels"], want.argmax(1))
    again = SharedModel.from_architecture(shared.architecture())
    pools = [s for s in again.stages if not hasattr(s, "weight") and hasattr(s, "geometry")]
    assert [p.geometry for p in pools] == [(3, 4, 4, 2, 2)]


def test_unusual_pooling_is_refused():
    with pytest.raises(MPCError, match="no padding"):
        compile_shared(nn.Sequential(nn.MaxPool2d(2, padding=1), nn.Flatten()), (1, 4, 4))
    with pytest.raises(MPCError, match="not supported"):
        compile_shared(nn.Sequential(nn.Tanh(), nn.Flatten()), (1, 4, 4))


def _silent_listener():
    """A socket on 127.0.0.1 that listens and never answers (a port something else holds)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    return s


def test_ranks_stop_as_soon_as_one_fails():
    import time

    from veil.encrypted.mpc.launch import run_ranks

    with _silent_listener() as s:
        held = f"127.0.0.1:{s.getsockname()[1]}"
        # rank 0 fails at once (no model); the dealer, connecting to a port that never
        # answers, would wait past its own 120 s timeout
        ranks = [["party", "--rank", "0", "--master", held],
                 ["party", "--rank", "2", "--master", held]]  # fmt: skip
        start = time.perf_counter()
        with pytest.raises(MPCError, match=r"rank 0 failed: .*--model"):
            run_ranks(lambda _master: ranks, "test", timeout_s=300)
    assert time.perf_counter() - start < 60


def test_three_processes_agree_with_threads(tmp_path, monkeypatch):
    from veil.cli.main import main
    from veil.core.io import load_model
    from veil.core.net import listening
    from veil.encrypted.mpc import launch
    from veil.encrypted.mpc.launch import run_processes

    path = tmp_path / "m.veil"
    assert (
        main(
            [
                "-q",
                "train",
                "-d",
                "digits",
                "-m",
                "mlp",
                "-O",
                "hidden=[16]",
                "--epochs",
                "5",
                "-o",
                str(path),
            ]
        )
        == 0
    )
    # the launcher binds the port and hands rank 0 the socket: rank 0 binding it again would
    # fail (its own inherited socket holds it), so the run shows the socket was used
    sockets = []

    def recorded(host, port):
        sockets.append(listening(host, port))
        return sockets[-1]

    monkeypatch.setattr(launch, "listening", recorded)
    over_tcp = run_processes(path, "digits", 30)
    assert len(sockets) == 1 and sockets[0].fileno() == -1  # closed here once rank 0 had it
    loaded = load_model(path)
    shared = compile_shared(loaded.model, loaded.spec.input_shape)
    from veil.encrypted.mpc.infer import test_images as _images

    x, y = _images("digits", 30)
    in_process = infer_threads(shared, x)
    assert np.abs(np.asarray(over_tcp["logits"]) - in_process["logits"]).max() < 1e-3
    assert over_tcp["accuracy"] == float((in_process["logits"].argmax(1) == y).mean())


def test_labels_only_reveals_the_argmax_and_nothing_else():
    model, shape = _model("mlp")
    shared = compile_shared(model, shape)
    x = np.random.default_rng(2).normal(size=(30, *shape))
    out = infer_threads(shared, x, labels_only=True, input_range=(-6.0, 6.0))
    assert "logits" not in out
    assert np.array_equal(out["labels"], shared.forward(x).argmax(1))


def _comparison_inputs(model: SharedModel, x: np.ndarray, labels_only: bool) -> float:
    """The largest magnitude a comparison sees, computed in plaintext stage by stage."""
    from veil.encrypted.mpc.model import Pool

    h, worst = x.reshape(len(x), -1), 0.0
    for s in model.stages:
        if isinstance(s, Pool):
            window = h[:, s.index]
            diffs = window[..., :, None] - window[..., None, :]
            worst = max(worst, float(np.abs(diffs).max()))
        elif getattr(s, "kind", None) == "relu":
            worst = max(worst, float(np.abs(h).max()))
        h = s.apply(h)
    if labels_only:
        worst = max(worst, float(np.abs(h[:, :, None] - h[:, None, :]).max()))
    return worst


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    scale=st.floats(0.1, 100.0),
    low=st.floats(-3.0, 0.0),
    width=st.floats(0.1, 4.0),
    labels_only=st.booleans(),
)
def test_comparison_bound_holds_for_every_input_in_the_range(seed, scale, low, width, labels_only):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(),
                        nn.Linear(8, 5), Square(), nn.Linear(5, 3))  # fmt: skip
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(scale)
    shared = compile_shared(net, (1, 6, 6))
    high = low + width
    x = np.random.default_rng(seed).uniform(low, high, size=(200, 1, 6, 6))
    x[0], x[1] = low, high  # the corners too
    bound = shared.comparison_bound(low, high, labels_only)
    assert _comparison_inputs(shared, x, labels_only) <= bound * (1 + 1e-9) + 1e-9


def test_auto_comparisons_fall_back_to_64_bits_and_check_the_range():
    model, shape = _model("mlp")
    x = np.random.default_rng(4).uniform(0, 1, size=(20, *shape))
    small = compile_shared(model, shape)
    with pytest.raises(MPCError, match="outside the agreed range"):
        infer_threads(small, x + 2.0)  # inputs in [2, 3], the 32 bits were sized on [0, 1]
    with torch.no_grad():
        model[0].weight.mul_(1e5)  # activations far beyond 32,768: 32 bits would wrap
    large = compile_shared(model, shape)
    # At 64 bits the range does not matter. The SecureML truncation is wrong with probability
    # |product| / 2^63 per element: summed over these layers' outputs (up to 2.4e5) that is
    # 2.2% of runs at 16 fractional bits (CI saw one) and 5e-6 at 10 bits, while the logit
    # error (at most 52 here) stays below the margin between the top two classes (49 on x
    # where the error is 16, 612 on x + 2).
    for inputs in (x, x + 2.0):
        out = infer_threads(large, inputs, frac=10)
        assert out["compare_bits"] == 64
        assert np.array_equal(out["logits"].argmax(1), large.forward(inputs).argmax(1))


@pytest.mark.parametrize("coefficients", [(0.3, 0.5, 0.1), (-1.2, 0.0, 2.0), (0.0, 2.0, -1.0)])
def test_quadratic_activations_fold_into_one_square(coefficients):
    from veil.core.models import Quadratic2

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), Quadratic2(*coefficients), nn.Linear(5, 3))
    shared = compile_shared(model, (6,))
    squares = [s for s in shared.stages if getattr(s, "kind", None) == "square"]
    assert len(squares) == (0 if coefficients[0] == 0 else 1)
    x = np.random.default_rng(6).uniform(-1, 1, size=(20, 6))
    with torch.no_grad():
        want = model(torch.as_tensor(x, dtype=torch.float32)).numpy()
    assert np.abs(shared.forward(x) - want).max() < 1e-5
    got = infer_threads(shared, x, input_range=(-1.0, 1.0))["logits"]
    assert np.abs(got - want).max() < 1e-2
