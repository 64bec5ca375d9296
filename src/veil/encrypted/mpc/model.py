"""A torch model run on secret-shared inputs: affine layers by Beaver matmul, ReLU, x²,
MaxPool (a tournament of comparisons over each gathered window).

The model owner (party 0 by default) holds the weights: its share of each weight matrix is
the matrix itself and the other party's is zero, so the Beaver product only ever opens
weights masked by dealer randomness. The other party learns the architecture (layer sizes,
which it needs to take part) and nothing else. The input owner's images are shared at the
start; the logits are revealed to the input owner only.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from veil.core.models import Quadratic2, Square
from veil.encrypted.layers import AFFINE_LAYERS, Affine, leaves, probe_affine
from veil.encrypted.mpc.comm import Comm, Traffic
from veil.encrypted.mpc.protocols import Party, serve_dealer, setup_seeds
from veil.encrypted.mpc.ring import FRAC_BITS, MPCError, decode, encode

ACTIVATIONS = {"relu": 1, "square": 2}
POOL = 3
ARCH_COLUMNS = 8  # kind, inputs, outputs, then a pool's channels, height, width, kernel, stride


@dataclass
class Activation:
    kind: str
    width: int
    layers: tuple[str, ...] = ()

    def apply(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0) if self.kind == "relu" else x * x


@dataclass
class Pool:
    """MaxPool2d on a flattened (C, H, W) activation: ``index[j]`` lists the inputs of output
    ``j``'s window; gathering is local on shares, the max a tournament of comparisons."""

    geometry: tuple[int, int, int, int, int]  # channels, height, width, kernel, stride

    @property
    def index(self) -> np.ndarray:
        return pool_index(*self.geometry)

    @property
    def width(self) -> int:
        return int(np.prod(self.geometry[:3]))

    def apply(self, x: np.ndarray) -> np.ndarray:
        return x[:, self.index].max(-1)


def pool_index(c: int, h: int, w: int, k: int, s: int) -> np.ndarray:
    """For each output of a k x k, stride-s max pool over (c, h, w), its k*k input positions."""
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    ch, y, x, dy, dx = np.meshgrid(np.arange(c), np.arange(oh), np.arange(ow), np.arange(k),
                                   np.arange(k), indexing="ij")  # fmt: skip
    flat = ch * h * w + (y * s + dy) * w + (x * s + dx)
    return flat.reshape(c * oh * ow, k * k)


@dataclass
class SharedModel:
    """Stages (affine maps and activations) and shapes; weights only on the owner's side."""

    stages: list
    input_size: int
    num_classes: int
    source: dict = field(default_factory=dict)

    def forward(self, x: np.ndarray) -> np.ndarray:
        h = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        for s in self.stages:
            h = s.apply(h)
        return h

    def comparison_bound(self, low: float, high: float, labels_only: bool = False) -> float:
        """The largest magnitude a comparison can see (a ReLU's input, the difference of two
        values a max pool or the argmax compares) for inputs in [low, high]: interval bound
        propagation through the stages, sound and usually loose."""
        lo, hi = np.full(self.input_size, float(low)), np.full(self.input_size, float(high))
        worst = 0.0
        for s in self.stages:
            if isinstance(s, Affine):
                mid, rad = s.weight @ ((lo + hi) / 2) + s.bias, np.abs(s.weight) @ ((hi - lo) / 2)
                lo, hi = mid - rad, mid + rad
            elif isinstance(s, Pool):
                window_lo, window_hi = lo[s.index], hi[s.index]
                worst = max(worst, float((window_hi.max(-1) - window_lo.min(-1)).max()))
                lo, hi = window_lo.max(-1), window_hi.max(-1)
            elif s.kind == "relu":
                worst = max(worst, float(np.abs(lo).max()), float(np.abs(hi).max()))
                lo, hi = np.maximum(lo, 0), np.maximum(hi, 0)
            else:  # x²
                top = np.maximum(lo * lo, hi * hi)
                lo, hi = np.where((lo <= 0) & (hi >= 0), 0.0, np.minimum(lo * lo, hi * hi)), top
        if labels_only:
            worst = max(worst, float(hi.max() - lo.min()))
        return worst

    def architecture(self, compare_bits: int = 64) -> torch.Tensor:
        """What the other party needs: per stage (kind, inputs, outputs), as int64; the first
        row also carries the comparison width the parties will use."""
        rows = [[0, self.input_size, self.num_classes, compare_bits, 0, 0, 0, 0]]
        for s in self.stages:
            if isinstance(s, Affine):
                rows.append([0, s.shape[1], s.shape[0], 0, 0, 0, 0, 0])
            elif isinstance(s, Pool):
                rows.append([POOL, s.width, len(s.index), *s.geometry])
            else:
                rows.append([ACTIVATIONS[s.kind], s.width, s.width, 0, 0, 0, 0, 0])
        return torch.tensor(rows, dtype=torch.int64)

    @classmethod
    def from_architecture(cls, rows: torch.Tensor) -> SharedModel:
        """The shapes-only model the non-owner runs (zero weights: its shares)."""
        (_, size, classes, _, *_), *rest = rows.tolist()
        names = {v: k for k, v in ACTIVATIONS.items()}
        stages = []
        for kind, n_in, n_out, *geometry in rest:
            if kind == 0:
                stages.append(Affine(np.zeros((n_out, n_in)), np.zeros(n_out)))
            elif kind == POOL:
                stages.append(Pool(tuple(geometry)))
            elif kind in names:
                stages.append(Activation(names[kind], n_in))
            else:
                raise MPCError(f"unknown stage kind {kind} in the architecture")
        return cls(stages, size, classes)


def compile_shared(model: nn.Module, input_shape: tuple[int, ...]) -> SharedModel:
    """Affine layers composed into matrices; ReLU, x² and MaxPool kept as protocol stages.

    A quadratic ``a x² + b x + c`` (:class:`~veil.core.models.Quadratic2`) becomes
    a (x + b/2a)² + (c - b²/4a): the shift joins the affine map before, x² is the one
    product, the scale and constant join the affine map after (linear when a = 0).
    """
    shape, stages, pending = tuple(int(s) for s in input_shape), [], None
    for name, layer in leaves(model):
        if isinstance(layer, AFFINE_LAYERS):
            step, shape = probe_affine(layer, shape, name)
            pending = step if pending is None else pending.then(step)
        elif isinstance(layer, Quadratic2):
            width = math.prod(shape)
            a, b, c = layer.a, layer.b, layer.c
            eye = np.eye(width)
            if a == 0:
                step = Affine(eye * b, np.full(width, c), (name,))
                pending = step if pending is None else pending.then(step)
                continue
            shift = Affine(eye, np.full(width, b / (2 * a)), (name,))
            stages.append(shift if pending is None else pending.then(shift))
            stages.append(Activation("square", width, (name,)))
            pending = Affine(eye * a, np.full(width, c - b * b / (4 * a)), (name,))
        elif isinstance(layer, nn.ReLU | Square):
            if pending is not None:
                stages.append(pending)
                pending = None
            kind = "relu" if isinstance(layer, nn.ReLU) else "square"
            stages.append(Activation(kind, math.prod(shape), (name,)))
        elif isinstance(layer, nn.MaxPool2d):
            if pending is not None:
                stages.append(pending)
                pending = None
            pool = _pool(layer, shape, name)
            stages.append(pool)
            c, h, w, k, s = pool.geometry
            shape = (c, (h - k) // s + 1, (w - k) // s + 1)
        else:
            raise MPCError(f"layer {name} ({type(layer).__name__}) is not supported; use Linear, "
                           "Conv, AvgPool, MaxPool, ReLU, x² or a x² + b x + c")  # fmt: skip
    if pending is not None:
        stages.append(pending)
    if len(shape) != 1:
        raise MPCError(f"the model must end in a vector of logits, not shape {shape}")
    return SharedModel(stages, math.prod(input_shape), int(shape[0]))


def _pool(layer: nn.MaxPool2d, shape: tuple, name: str) -> Pool:
    def one(v) -> int:
        return v if isinstance(v, int) else v[0] if len(set(v)) == 1 else -1

    k, stride = one(layer.kernel_size), one(layer.stride or layer.kernel_size)
    plain = one(layer.padding) == 0 and one(layer.dilation) == 1 and not layer.ceil_mode
    if len(shape) != 3 or k < 1 or stride < 1 or not plain:
        raise MPCError(f"layer {name}: MaxPool2d needs square windows, no padding or dilation, "
                       f"on a (C, H, W) input (got {tuple(shape)})")  # fmt: skip
    return Pool((*shape, k, stride))


def run_party(
    comm: Comm,
    model: SharedModel | None,
    images: np.ndarray | None,
    count: int,
    model_owner: int = 0,
    input_owner: int = 1,
    frac: int = FRAC_BITS,
    image_shares: np.ndarray | None = None,
    labels_only: bool = False,
    repeat: int = 1,
    compare_bits: int | str = "auto",
    input_range: tuple[float, float] = (0.0, 1.0),
    weight_shares: list | None = None,
    sharing_id: int = 0,
) -> dict:
    """One rank's part of a private inference: the dealer serves, the parties compute.

    ``model`` is given to the model owner only, ``images`` (count, features) to the input
    owner only; the input owner's result holds the logits. With ``image_shares`` instead,
    each party brings its XOR share of 8-bit images (from :func:`veil.imaging.xor_share`)
    and nobody ever holds the pixels; the logits go to party 1. With ``labels_only`` the
    argmax is computed on shares too and party 1 learns each label, not the logits (output
    privacy against the input owner; 4 comparison levels for 10 classes).

    The session (seeds from the dealer, the architecture from the model owner) is set up
    once; the inference then runs ``repeat`` times in it, as a service answers queries.
    ``times`` holds each inference's seconds; ``traffic`` counts the last one.
    ``compare_bits`` 32 makes each comparison cheaper (one round, half the bytes), exact
    while what it compares stays below 32,768 in magnitude (see :meth:`Party.sign_bit`);
    ``"auto"`` (the default) lets the model owner choose 32 where interval bounds over the
    public ``input_range`` prove that, else 64, and the input owner refuses inputs outside
    the range. The choice travels with the architecture (it tells the input owner one bit
    about the weights: whether their bound passes 32,768).

    With ``weight_shares`` (every computing party passes its own, e.g. from secure training
    with ``keep_shared``) the model is an MLP that nobody holds whole: the parties check
    they hold shares of one architecture and of one sharing (``sharing_id``), and ``auto``
    comparisons take 64 bits (there are no plaintext weights to bound).
    """
    if comm.rank == comm.dealer:
        return {"dealer_requests": serve_dealer(comm, setup_seeds(comm))}
    if (model_owner, input_owner) != (0, 1):
        raise MPCError("party 0 holds the model and party 1 the input")
    party = Party(comm, setup_seeds(comm), frac)
    model, weights = _set_up(party, model, weight_shares, sharing_id, model_owner,
                             compare_bits, input_range, labels_only)  # fmt: skip
    shape = (count, model.input_size)
    plain = None
    if comm.rank == input_owner and images is not None:
        if compare_bits == "auto" and party.compare_bits == 32:
            _check_range(images, input_range)
        plain = _encoded(images, frac)
    times = []
    for _ in range(max(1, repeat)):
        comm.traffic = Traffic()
        start = time.perf_counter()
        out = _infer(party, model, weights, plain, image_shares, shape, labels_only)
        times.append(time.perf_counter() - start)
    party.stop_dealer()
    traffic = comm.traffic.to_dict()
    return {**out, "traffic": traffic, "times": times, "compare_bits": party.compare_bits}


def _set_up(
    party: Party,
    model: SharedModel | None,
    weight_shares: list | None,
    sharing_id: int,
    owner: int,
    compare_bits,
    input_range,
    labels_only,
) -> tuple:
    """The session's model at every party (the owner's architecture, checked against this
    party's weight shares if it has any), the comparison width, and this party's
    (weight, bias) share per stage."""
    shared = weight_shares is not None
    if shared:
        model = mlp_of([tuple(w.shape) for w, _ in weight_shares])
        compare_bits = 64 if compare_bits == "auto" else compare_bits  # nothing to bound
    mine = model
    bits = None
    if party.rank == owner:
        bits = _comparison_bits(model, compare_bits, input_range, labels_only)
    model, party.compare_bits = _agree_on_architecture(
        party, model, owner, bits, sharing_id if shared else None
    )
    if not shared:
        weights = _weight_shares(model, party.rank == owner, party.frac)
    else:
        if not torch.equal(model.architecture(), mine.architecture()):
            raise MPCError("the parties' weight shares are of different models")
        pairs = iter(weight_shares)
        weights = [next(pairs) if isinstance(s, Affine) else None for s in model.stages]
    # each weight matrix masked once for the session: queries then open only activations
    return model, [None if p is None else (party.fix_weight(p[0]), p[1]) for p in weights]


def _comparison_bits(model: SharedModel, choice: int | str, input_range, labels_only) -> int:
    if choice == "auto":
        bound = model.comparison_bound(*input_range, labels_only=labels_only)
        return 32 if bound < 32_000 else 64  # 2^15 less a margin for fixed-point rounding
    if int(choice) not in (32, 64):
        raise MPCError(f"comparisons run on 32 or 64 bits (or auto), not {choice}")
    return int(choice)


def _check_range(images, input_range) -> None:
    low, high = input_range
    x = np.asarray(images)
    if x.size and (x.min() < low or x.max() > high):
        raise MPCError(
            f"inputs lie outside the agreed range [{low}, {high}] that sized the comparisons: "
            "pass the range your data has (--input-range) or --compare-bits 64"
        )


SHARES_KIND = "veil-mpc-weight-shares"


def save_weight_shares(path, shares: list, party: int, parties: int, sharing_id: int,
                       meta: dict | None = None):  # fmt: skip
    """One party's shares of an MLP's weights (from training with ``keep_shared``) as a
    safetensors file: alone they are uniformly random; all ``parties`` files together
    are the model."""
    from veil.core.io import save_arrays

    arrays = {}
    for i, (w, b) in enumerate(shares):
        # C order: a transposed share would otherwise be written in the wrong layout
        arrays[f"w{i}"], arrays[f"b{i}"] = (np.ascontiguousarray(t.numpy()) for t in (w, b))
    info = {"party": party, "parties": parties, "sharing_id": str(sharing_id),
            "layers": len(shares), "fixed_point_bits": FRAC_BITS, **(meta or {})}  # fmt: skip
    return save_arrays(path, arrays, info, SHARES_KIND)


def load_weight_shares(path) -> tuple[list, dict]:
    """A party's weight shares and the file's header (party, parties, sharing_id, ...)."""
    from veil.core.io import load_arrays

    arrays, meta = load_arrays(path, SHARES_KIND)
    try:
        layers = int(meta["layers"])
        shares = [(torch.from_numpy(arrays[f"w{i}"]), torch.from_numpy(arrays[f"b{i}"]))
                  for i in range(layers)]  # fmt: skip
        meta["sharing_id"] = int(meta["sharing_id"])
    except (KeyError, ValueError, TypeError) as e:
        raise MPCError(f"{path}: malformed weight shares ({e})") from e
    if any(w.dtype != torch.int64 or w.dim() != 2 or b.shape != (w.shape[1],) for w, b in shares):
        raise MPCError(f"{path}: weight shares must be int64 (in, out) matrices and (out,) biases")
    if meta.get("fixed_point_bits") != FRAC_BITS:
        raise MPCError(f"{path}: written with {meta.get('fixed_point_bits')} fractional bits")
    mlp_of([tuple(w.shape) for w, _ in shares])  # the sizes must chain
    return shares, meta


def mlp_of(sizes: list[tuple[int, int]]) -> SharedModel:
    """The shapes-only MLP (Linear, ReLU, ..., Linear) with these (in, out) layer sizes."""
    if not sizes or any(a < 1 or b < 1 for a, b in sizes):
        raise MPCError(f"layer sizes {sizes} do not make an MLP")
    if any(out != nxt for (_, out), (nxt, _) in zip(sizes, sizes[1:], strict=False)):
        raise MPCError(f"layer sizes {sizes} do not chain")
    stages = []
    for i, (n_in, n_out) in enumerate(sizes):
        if i:
            stages.append(Activation("relu", n_in))
        stages.append(Affine(np.zeros((n_out, n_in)), np.zeros(n_out)))
    return SharedModel(stages, sizes[0][0], sizes[-1][1])


def _weight_shares(model: SharedModel, owner: bool, frac: int) -> list:
    """Each affine stage's (weight, bias) shares, encoded once per session: the owner holds
    them whole, the other parties zeros (the weights are never split, only masked)."""
    out = []
    for stage in model.stages:
        if not isinstance(stage, Affine):
            out.append(None)
        elif owner:
            out.append((encode(stage.weight.T, frac), encode(stage.bias, frac)))
        else:
            out.append((torch.zeros(stage.shape[::-1], dtype=torch.int64), 0))
    return out


def _infer(party: Party, model: SharedModel, weights: list, plain, image_shares, shape,
           labels_only: bool) -> dict:  # fmt: skip
    """One inference in a set-up session; the input owner's result (party 1)."""
    frac = party.frac
    x = None  # shares of the activations; a plain input is never shared, only masked
    if image_shares is not None:
        x = party.from_xor_bytes(_xor_bytes(image_shares, shape), 1 / 255)
    for stage, pair in zip(model.stages, weights, strict=True):
        if isinstance(stage, Affine):
            w, b = pair
            first = x is None  # the input: party 1 holds it in the clear
            x = party.fixed_input_matmul(plain, w, shape) if first else party.fixed_matmul(x, w)
            x = x + b
        elif isinstance(stage, Pool):
            x = party.max_last(x[:, torch.from_numpy(stage.index)])
        elif stage.kind == "relu":
            x = party.relu(x)
        else:
            x = party.square(x)
    if labels_only:
        onehot = party.reveal_to(1, party.argmax(x)[1])
        return {} if onehot is None else {"labels": onehot.argmax(-1).numpy()}
    logits = party.reveal_to(1, x)
    return {} if logits is None else {"logits": decode(logits, frac)}


def _xor_bytes(shares: np.ndarray, shape: tuple) -> torch.Tensor:
    arr = np.asarray(shares)
    if arr.dtype != np.uint8 or arr.size != shape[0] * shape[1]:
        raise MPCError(f"image shares must be {shape[0]} uint8 images of {shape[1]} pixels")
    return torch.from_numpy(arr.reshape(shape).astype(np.int64))


def _encoded(images, frac: int) -> torch.Tensor:
    return encode(np.asarray(images, dtype=np.float64).reshape(len(images), -1), frac)


def _agree_on_architecture(
    party: Party, model: SharedModel | None, owner: int, compare_bits: int | None,
    sharing: int | None,
) -> tuple[SharedModel, int]:  # fmt: skip
    """The owner's architecture, comparison width and weight mode (whole at the owner, or
    shares of the sharing ``sharing`` at every party) at every party; a party in another
    mode or with shares of another sharing refuses."""
    rows = None
    if party.rank == owner:
        rows = model.architecture(compare_bits)
        rows[0, 4], rows[0, 5] = int(sharing is not None), sharing or 0
    rows = party.publish(owner, rows, ARCH_COLUMNS, 1024, "stages")
    if party.rank == owner:
        return model, compare_bits
    if bool(rows[0, 4]) != (sharing is not None):
        mode = "shares of the weights" if rows[0, 4] else "the whole model"
        raise MPCError(f"party {owner} holds {mode}; this party must too (or neither)")
    if sharing is not None and int(rows[0, 5]) != sharing:
        raise MPCError("the parties hold weight shares of different sharings (training runs)")
    bits = int(rows[0, 3])
    if bits not in (32, 64):
        raise MPCError(f"party {owner} announced {bits}-bit comparisons; expected 32 or 64")
    return SharedModel.from_architecture(rows), bits


def infer_threads(model: SharedModel | None, images: np.ndarray, frac: int = FRAC_BITS,
                  labels_only: bool = False, parties: int = 2, compare_bits: int | str = "auto",
                  input_range: tuple[float, float] = (0.0, 1.0),
                  weight_shares: list | None = None,
                  sharing_ids: list[int] | None = None) -> dict:  # fmt: skip
    """Private inference with the parties (2 or 3: the third brings no input) and the dealer
    as threads of this process. ``weight_shares`` (one list per party, by rank, with the
    ``sharing_ids`` they came with) replaces ``model`` for a model nobody holds whole."""
    from veil.encrypted.mpc.comm import run_threads

    x = np.asarray(images, dtype=np.float64).reshape(len(images), -1)

    def program(comm: Comm) -> dict:
        mine = model if comm.rank == 0 else None
        images_in = x if comm.rank == 1 else None
        share, sharing = None, 0
        if weight_shares is not None and comm.rank < parties:
            share, sharing = weight_shares[comm.rank], (sharing_ids or [0] * parties)[comm.rank]
        return run_party(comm, mine, images_in, len(x), frac=frac, labels_only=labels_only,
                         compare_bits=compare_bits, input_range=input_range,
                         weight_shares=share, sharing_id=sharing)  # fmt: skip

    *ranks, dealer = run_threads(parties, program)
    key = "labels" if labels_only else "logits"
    return {key: ranks[1][key], "traffic": [r["traffic"] for r in ranks],
            "compare_bits": ranks[1]["compare_bits"], **dealer}  # fmt: skip


DEALERS = {
    "trusted": "trusted, non-colluding",
    "client": "the input owner (client-generated triples)",
}


def guarantees(
    numbers: dict,
    step: str = "mpc",
    labels_only: bool = False,
    parties: int = 2,
    compare_bits: int = 64,
    dealer: str = "trusted",
) -> list:
    """The input- and output-privacy claims of a private inference, with its measurements.

    ``dealer`` "client": the input owner runs the dealer (client-generated triples). Then
    no third party need be trusted for the input's privacy, but the input owner knows the
    masks the weights are opened under and could unmask them: the weights are not hidden
    from it, and the claims say so.
    """
    from veil.core.guarantees import Guarantee

    if dealer not in DEALERS:
        raise MPCError(f"the dealer is {' or '.join(DEALERS)}, not {dealer!r}")
    parameters = {
        "protocol": "additive sharing over Z_2^64, Beaver triples, Kogge-Stone comparison",
        "parties": parties,
        "dealer": DEALERS[dealer],
        "fixed_point_bits": FRAC_BITS,
        "compare_bits": compare_bits,
    }
    if compare_bits == 32:
        parameters["activation_bound"] = "ReLU exact while |activation| < 32768"
    threat = (
        f"{'two' if parties == 2 else 'three'} semi-honest parties of which none colludes "
        "with another, and a dealer that colludes with none; the model owner's party learns "
        "nothing about the input, the input owner's nothing about the weights beyond the "
        "layer sizes" + ("; the third party learns nothing of either" if parties == 3 else "")
    )
    if dealer == "client":
        threat = (
            "semi-honest parties; the input owner generates the correlated randomness itself "
            "(client-generated triples), so the model owner's party learns nothing about the "
            "input without trusting anyone else; the weights are NOT hidden from the input "
            "owner (it knows the masks they are opened under): use it for models that need no "
            "secrecy from the client"
        )
    claims = {
        "input": "the model owner's party sees only uniformly random shares of the input",
        "output": "only the labels (argmax computed on shares) are revealed, to the input owner"
        if labels_only
        else "the logits are revealed to the input owner only",
    }
    return [
        Guarantee(
            guarantee=kind,
            mechanism="secure two-party computation (secret sharing)",
            claim=claim,
            threat_model=threat,
            parameters={**parameters, "labels_only": labels_only},
            numbers=dict(numbers),
            step=step,
        )
        for kind, claim in claims.items()
    ]
