"""Two ways to lay images into CKKS slots, and the server-side evaluation for each.

``batch``: ciphertext i holds feature i of up to N/2 images (one slot per image). An affine
stage is plaintext-scalar products summed per output and rescaled once; no rotations, so no
rotation keys. Cost is per ciphertext, so the time per image falls with the batch size.

``vector``: one image per request, all its features in one ciphertext (or, when the first
layer is sparse like a convolution, one ciphertext per kernel position, laid out by the
client from a public index table: which input feeds which slot, never the weights). Dense
stages use the diagonal method with baby-step/giant-step rotations on inputs replicated
with a power-of-two period, then fold the partial sums; each output is again replicated, so
the next stage needs no masking and no extra level.

Both take the stages of :mod:`veil.encrypted.he.compiler` and spend one level per stage.
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
from dataclasses import dataclass, field

import numpy as np

from veil.encrypted.he.ckks import HEError, PublicContext, scratch
from veil.encrypted.he.compiler import Affine, Compiled, Square2

GATHER_MAX = 64  # a sparse first stage (a convolution) with this many weights per output at
# most is gathered: one ciphertext per kernel position instead of rotations


def _sparse(stage: Affine) -> bool:
    k = stage.max_row_nonzeros()
    return k <= GATHER_MAX and 4 * k <= stage.shape[1]


def _pow2(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(1, n))))


# -- batch packing ---------------------------------------------------------------------------


def _row_terms(stage: Affine, scale: float) -> list[list[tuple[int, float]]]:
    """Per output, the (input, weight) pairs that survive encoding at ``scale``.

    A weight below one unit of the scale encodes to zero, and SEAL refuses the transparent
    product; an all-zero row keeps its first input at weight 1/scale (the smallest that
    encodes), which adds less than the encoding error.
    """
    rows = []
    keep = np.abs(stage.weight) * scale >= 0.5
    for j in range(stage.weight.shape[0]):
        cols = np.flatnonzero(keep[j])
        rows.append([(int(i), float(stage.weight[j, i])) for i in cols] or [(0, 1.0 / scale)])
    return rows


def affine_batch(ctx: PublicContext, stage: Affine, cts: list, workers: int | None = None) -> list:
    """One output ciphertext per row: products summed, rescaled once, bias added."""
    ring, ev = ctx.ring, ctx.ring.evaluator
    parms, scale = cts[0].parms_id(), ctx.params.scale
    pt, product = ring.sealapi.Plaintext(), ring.ciphertext()
    rows = _row_terms(stage, scale)

    def row(j: int):
        acc = None
        for i, w in rows[j]:
            ring.encoder.encode(w, parms, scale, pt)
            if acc is None:
                acc = ring.ciphertext()
                ev.multiply_plain(cts[i], pt, acc)
            else:
                ev.multiply_plain(cts[i], pt, product)
                ev.add_inplace(acc, product)
        ev.rescale_to_next_inplace(acc)
        _add_constant(ctx, acc, float(stage.bias[j]))
        return acc

    return fork_map(ring, len(rows), row, workers)


def default_workers() -> int:
    """Processes for batch evaluation: ``VEIL_HE_WORKERS``, else the usable cores."""
    env = os.environ.get("VEIL_HE_WORKERS")
    if env:
        return max(1, int(env))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def fork_map(ring, count: int, compute, workers: int | None = None) -> list:
    """``[compute(i) for i in range(count)]``, split across forked processes.

    SEAL's Python binding holds the GIL, so threads do not help; forked children share the
    ciphertexts copy-on-write and hand their results back through the private scratch folder
    (two processes ran twice the work in the same time here).
    """
    workers = min(workers or default_workers(), count // 2)
    if workers <= 1 or not hasattr(os, "fork"):
        return [compute(i) for i in range(count)]
    bounds = np.linspace(0, count, workers + 1).astype(int)
    folder = scratch() / secrets.token_hex(6)
    folder.mkdir()
    pids = [_fork(compute, range(bounds[w], bounds[w + 1]), folder) for w in range(1, workers)]
    try:
        out = [compute(i) for i in range(bounds[0], bounds[1])]
    finally:
        failed = [pid for pid in pids if os.waitpid(pid, 0)[1] != 0]
    try:
        if failed:
            raise HEError(f"{len(failed)} evaluation worker(s) failed")
        for i in range(bounds[1], count):
            ct = ring.ciphertext()
            ct.load(ring.context, str(folder / str(i)))
            out.append(ct)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return out


def _fork(compute, indices, folder) -> int:
    pid = os.fork()
    if pid == 0:  # the child: compute, save, and leave without running the parent's exit hooks
        code = 1
        try:
            for i in indices:
                compute(i).save(str(folder / str(i)))
            code = 0
        finally:
            os._exit(code)
    return pid


def _add_constant(ctx: PublicContext, ct, value) -> None:
    if isinstance(value, float) and value == 0.0:
        return
    ctx.ring.evaluator.add_plain_inplace(ct, ctx.ring.plain(value, ct.parms_id(), ct.scale))


def _square(ctx: PublicContext, stage: Square2, ct):
    """``x (x + shift)``, relinearised and rescaled: one level."""
    ev = ctx.ring.evaluator
    other = ct
    if stage.shift != 0.0:
        other = ctx.ring.ciphertext()
        ev.add_plain(ct, ctx.ring.plain(float(stage.shift), ct.parms_id(), ct.scale), other)
    out = ctx.ring.ciphertext()
    ev.multiply(ct, other, out)
    ev.relinearize_inplace(out, ctx.relin_keys)
    ev.rescale_to_next_inplace(out)
    return out


def evaluate_batch(ctx: PublicContext, model: Compiled, cts: list) -> list:
    """Logits of every image in the batch: one ciphertext per class, one slot per image."""
    if len(cts) != model.input_size:
        raise HEError(f"batch packing needs {model.input_size} ciphertexts, got {len(cts)}")
    for stage in model.stages:
        if isinstance(stage, Affine):
            cts = affine_batch(ctx, stage, cts)
        else:
            cts = fork_map(
                ctx.ring, len(cts), lambda i, cts=cts, stage=stage: _square(ctx, stage, cts[i])
            )
    return cts


def batch_columns(x: np.ndarray, slots: int) -> np.ndarray:
    """Images (B, ...) as feature columns (features, B) for batch packing."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    if len(x) > slots:
        raise HEError(f"{len(x)} images exceed the {slots} slots of one batch")
    return x.T


# -- vector packing --------------------------------------------------------------------------


@dataclass
class Layout:
    """Where a stage reads from: ``period`` (the input repeats every ``period`` slots)."""

    period: int
    out_period: int
    plan: dict = field(default_factory=dict)


class VectorPlan:
    """Slot layouts of every stage of ``model`` for ``slots`` slots, and the rotations used."""

    def __init__(self, model: Compiled, slots: int):
        self.model, self.slots = model, slots
        self.gather: tuple[np.ndarray, np.ndarray] | None = None
        self.layouts: list[Layout] = []
        first = model.stages[0]
        if isinstance(first, Affine) and _sparse(first):
            self.gather = _gather_table(first)
            period = _pow2(first.shape[0])
        else:
            period = _pow2(model.input_size)
        self.input_period = period
        for k, stage in enumerate(model.stages):
            if isinstance(stage, Affine) and not (k == 0 and self.gather is not None):
                out = _pow2(stage.shape[0])
                window = max(period, out)
                baby = _pow2(math.isqrt(out - 1) + 1) if out > 1 else 1
                self.layouts.append(Layout(period, out, {"window": window, "baby": baby}))
                period = out
            else:
                self.layouts.append(Layout(period, period))
            if period > slots:
                raise HEError(
                    f"stage {k} ({', '.join(stage.layers)}) needs {period} slots; this ring "
                    f"has {slots}: use batch packing or a larger ring"
                )

    def rotation_steps(self) -> list[int]:
        steps: set[int] = set()
        for layout in self.layouts:
            if "window" not in layout.plan:
                continue
            out, baby, window = layout.out_period, layout.plan["baby"], layout.plan["window"]
            steps.update(range(1, baby))
            steps.update(range(baby, out, baby))
            w = window // 2
            while w >= out:
                steps.add(w)
                w //= 2
        return sorted(steps)

    def public(self) -> dict:
        """What a client needs to lay out its input (no weights)."""
        gather = None if self.gather is None else self.gather[0].tolist()
        return {"slots": self.slots, "input_period": self.input_period, "gather": gather}


def layout_vectors(public: dict, image: np.ndarray) -> list[np.ndarray]:
    """What the client encrypts for one image: slot vectors in a plan's public layout."""
    x = np.asarray(image, dtype=np.float64).ravel()
    slots, period = int(public["slots"]), int(public["input_period"])
    if public["gather"] is None:
        return [_replicate(x, period, slots)]
    padded = np.append(x, 0.0)  # index -1 reads the appended zero
    return [_replicate(padded[np.asarray(row)], period, slots) for row in public["gather"]]


def _gather_table(stage: Affine) -> tuple[np.ndarray, np.ndarray]:
    """Per kernel position k and output o: the input index (or -1) and its weight."""
    out, _ = stage.shape
    k = stage.max_row_nonzeros()
    index = np.full((k, out), -1, dtype=np.int64)
    values = np.zeros((k, out))
    for o in range(out):
        cols = np.flatnonzero(stage.weight[o])
        index[: len(cols), o] = cols
        values[: len(cols), o] = stage.weight[o, cols]
    return index, values


def _replicate(values: np.ndarray, period: int, slots: int) -> np.ndarray:
    block = np.zeros(period)
    block[: len(values)] = values
    return np.tile(block, slots // period)


def _diagonals(stage: Affine, layout: Layout, slots: int) -> list[np.ndarray]:
    """Generalised diagonals of the padded matrix, pre-rotated for the giant steps."""
    out, window, baby = layout.out_period, layout.plan["window"], layout.plan["baby"]
    rows, cols = stage.shape
    m = np.zeros((out, window))
    m[:rows, :cols] = stage.weight
    k = np.arange(window)
    diags = []
    for i in range(out):
        d = np.tile(m[k % out, (k + i) % window], slots // window)
        diags.append(np.roll(d, (i // baby) * baby))
    return diags


class VectorEvaluator:
    """Evaluates one image per request under a :class:`VectorPlan`; plaintexts are cached."""

    def __init__(self, ctx: PublicContext, plan: VectorPlan):
        missing = set(plan.rotation_steps()) - set(ctx.steps)
        if missing:
            raise HEError(f"the context lacks rotation keys for steps {sorted(missing)[:8]}")
        self.ctx, self.plan = ctx, plan
        self._plain: dict = {}

    def _plains(self, key, make, parms, scale) -> list:
        """Encoded slot vectors, cached; None for one that encodes to zero (SEAL refuses a
        product with a zero plaintext as transparent, and it adds nothing)."""
        if key not in self._plain:
            self._plain[key] = [
                self.ctx.ring.plain(v, parms, scale) if np.abs(v).max() * scale >= 0.5 else None
                for v in make()
            ]
        return self._plain[key]

    def run(self, cts: list):
        plan = self.plan
        expected = 1 if plan.gather is None else len(plan.gather[0])
        if len(cts) != expected:
            raise HEError(f"vector packing needs {expected} ciphertexts per image, got {len(cts)}")
        ct = cts[0]
        for k, (stage, layout) in enumerate(zip(plan.model.stages, plan.layouts, strict=True)):
            if isinstance(stage, Square2):
                ct = _square(self.ctx, stage, ct)
            elif k == 0 and plan.gather is not None:
                ct = self._gathered(stage, layout, cts)
            else:
                ct = self._dense(k, stage, layout, ct)
        return ct

    def _bias(self, stage: Affine, layout: Layout, ct) -> None:
        _add_constant(self.ctx, ct, _replicate(stage.bias, layout.out_period, self.plan.slots))

    def _gathered(self, stage: Affine, layout: Layout, cts: list):
        ev, scale = self.ctx.ring.evaluator, self.ctx.params.scale
        values = self.plan.gather[1]
        plains = self._plains(
            0,
            lambda: [_replicate(v, layout.out_period, self.plan.slots) for v in values],
            cts[0].parms_id(),
            scale,
        )
        acc, product = None, self.ctx.ring.ciphertext()
        for ct, pt in zip(cts, plains, strict=True):
            if pt is None:
                continue
            if acc is None:
                acc = self.ctx.ring.ciphertext()
                ev.multiply_plain(ct, pt, acc)
            else:
                ev.multiply_plain(ct, pt, product)
                ev.add_inplace(acc, product)
        if acc is None:
            raise HEError(
                f"the first stage ({', '.join(stage.layers)}) has no weight above the scale"
            )
        ev.rescale_to_next_inplace(acc)
        self._bias(stage, layout, acc)
        return acc

    def _dense(self, k: int, stage: Affine, layout: Layout, ct):
        ring, ev, gk = self.ctx.ring, self.ctx.ring.evaluator, self.ctx.galois_keys
        out, baby, window = layout.out_period, layout.plan["baby"], layout.plan["window"]
        diags = self._plains(
            k, lambda: _diagonals(stage, layout, self.plan.slots), ct.parms_id(), ring.params.scale
        )
        rotated = [ct]
        for j in range(1, min(baby, out)):
            r = ring.ciphertext()
            ev.rotate_vector(ct, j, gk, r)
            rotated.append(r)
        total, product = None, ring.ciphertext()
        for g in range(0, out, baby):
            inner = None
            for j in range(min(baby, out - g)):
                if diags[g + j] is None:
                    continue
                if inner is None:
                    inner = ring.ciphertext()
                    ev.multiply_plain(rotated[j], diags[g + j], inner)
                else:
                    ev.multiply_plain(rotated[j], diags[g + j], product)
                    ev.add_inplace(inner, product)
            if inner is None:
                continue
            if g:
                ev.rotate_vector_inplace(inner, g, gk)
            total = inner if total is None else _added(ev, total, inner)
        if total is None:
            raise HEError(f"stage {k} ({', '.join(stage.layers)}) has no weight above the scale")
        ev.rescale_to_next_inplace(total)
        w = window // 2
        while w >= out:
            r = ring.ciphertext()
            ev.rotate_vector(total, w, gk, r)
            ev.add_inplace(total, r)
            w //= 2
        self._bias(stage, layout, total)
        return total


def _added(ev, a, b):
    ev.add_inplace(a, b)
    return a


def vector_output(values: np.ndarray, num_classes: int) -> np.ndarray:
    """The logits from a decrypted vector-packed result (the first slots of its period)."""
    return np.asarray(values)[:num_classes]
