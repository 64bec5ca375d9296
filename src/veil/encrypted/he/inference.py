"""Encrypted inference end to end: what the server publishes, what the client sends back.

:class:`EncryptedModel` (server) holds the compiled model and evaluates requests on a
:class:`PublicContext`; :class:`Client` holds the keys, lays out and encrypts inputs, and
decrypts the logits. Nothing decrypted ever goes back to the server (decryption results
help key-recovery attacks on CKKS, Li & Micciancio 2021), and the server has no route that
would take one.

Example (in one process; ``veil he serve`` / ``veil he infer`` put HTTP between them)::

    server = EncryptedModel(compile_model(model, (1, 28, 28)))
    client = Client(server.spec())
    request = client.encrypt(images)                 # bytes: ciphertexts + header
    reply = server.evaluate(client.public(), request)
    logits = client.decrypt(reply)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from veil.encrypted.he.ckks import (
    Context,
    HEError,
    Params,
    PublicContext,
    choose_params,
    ciphertexts_bytes,
    headroom_bits,
    unpack,
)
from veil.encrypted.he.compiler import Affine, Compiled
from veil.encrypted.he.packing import (
    VectorEvaluator,
    VectorPlan,
    batch_columns,
    evaluate_batch,
    layout_vectors,
    vector_output,
)

PACKINGS = ("batch", "vector")
# Relative cost of one rotation and one ciphertext square to one plaintext product + add,
# measured with SEAL at N=8192 (1.55 ms, 1.9 ms vs 0.16 ms): used only to choose a packing.
ROTATION_COST, SQUARE_COST = 10.0, 12.0
# Per input ciphertext per limb: the client encodes, encrypts and serialises it, both sides
# hash it and it crosses the wire (about 2 ms at N=8192 plus transfer): 100 MNIST images
# over HTTP took 41 s one by one and about 10 s as one batch, hence this weight.
SEND_COST = 40.0


class EncryptedModel:
    """The server side: a compiled model evaluated on ciphertexts under a client's keys."""

    def __init__(self, model: Compiled, sample: np.ndarray | None = None, min_scale_bits: int = 30):
        self.model = model
        self.headroom = headroom_bits(model, sample)
        self.params = choose_params(model.depth, self.headroom, min_scale_bits)
        self._plans: dict[int, VectorPlan] = {}
        self._evaluators: dict[str, VectorEvaluator] = {}

    def plan(self, slots: int) -> VectorPlan:
        if slots not in self._plans:
            self._plans[slots] = VectorPlan(self.model, slots)
        return self._plans[slots]

    def spec(self) -> dict:
        """What a client needs: shapes, CKKS parameters, rotations and the input layout.

        It names which input feeds which slot of the first layer (the sparsity pattern of a
        convolution, i.e. its kernel size and stride), never a weight.
        """
        plan = self.plan(self.params.slots)
        return {
            "input_shape": list(self.model.input_shape),
            "num_classes": self.model.num_classes,
            "depth": self.model.depth,
            "params": self.params.to_dict(),
            "rotation_steps": plan.rotation_steps(),
            "vector": plan.public(),
            "cost": {"batch": self.batch_cost(), "vector": self.vector_cost()},
        }

    def check_context(self, ctx: PublicContext) -> PublicContext:
        ctx.assert_public()
        if ctx.params.levels < self.model.depth:
            raise HEError(
                f"the context has {ctx.params.levels} levels; this model needs {self.model.depth}"
            )
        return ctx

    def evaluate(self, ctx: PublicContext, request: bytes) -> bytes:
        """Evaluate a request (see :meth:`Client.encrypt`) and return the encrypted logits."""
        self.check_context(ctx)
        header, blobs = unpack(request, "ciphertexts")
        packing, count = header.get("packing"), header.get("count")
        if packing not in PACKINGS:
            raise HEError(f"unknown packing {packing!r}; use one of {PACKINGS}")
        if not isinstance(count, int) or count < 1:
            raise HEError("request header needs a positive image count")
        cts = ctx.ring.load_ciphertexts(blobs)
        if packing == "batch":
            if count > ctx.params.slots:
                raise HEError(f"{count} images exceed the {ctx.params.slots} slots of one batch")
            out = evaluate_batch(ctx, self.model, cts)
        else:
            out = self._vector(ctx, cts, count)
        return ciphertexts_bytes(out, {"packing": packing, "count": count})

    def _vector(self, ctx: PublicContext, cts: list, count: int) -> list:
        evaluator = self._evaluators.get(ctx.digest())
        if evaluator is None:
            evaluator = VectorEvaluator(ctx, self.plan(ctx.params.slots))
            self._evaluators = {ctx.digest(): evaluator}  # one client's plaintexts cached
        per = len(cts) // count
        if per * count != len(cts):
            raise HEError(f"{len(cts)} ciphertexts do not split into {count} images")
        return [evaluator.run(cts[i * per : (i + 1) * per]) for i in range(count)]

    def batch_cost(self) -> float:
        """Work units of one batched evaluation (any number of images up to the slots)."""
        limbs = self.model.depth + 1
        cost = SEND_COST * limbs * self.model.input_size
        for stage in self.model.stages:
            weights = int((stage.weight != 0).sum()) if isinstance(stage, Affine) else 0
            cost += limbs * (weights or SQUARE_COST * stage.width)
            limbs -= 1
        return cost

    def vector_cost(self) -> float:
        """Work units of one image under vector packing."""
        plan, limbs = self.plan(self.params.slots), self.model.depth + 1
        cost = SEND_COST * limbs * (1 if plan.gather is None else len(plan.gather[0]))
        for k, (stage, layout) in enumerate(zip(self.model.stages, plan.layouts, strict=True)):
            if not isinstance(stage, Affine):
                cost += limbs * SQUARE_COST
            elif k == 0 and plan.gather is not None:
                cost += limbs * len(plan.gather[0])
            else:
                out, baby = layout.out_period, layout.plan["baby"]
                folds = int(math.log2(layout.plan["window"] // out))
                cost += limbs * (out + ROTATION_COST * (baby + out // baby + folds))
            limbs -= 1
        return cost


def choose_packing(spec: dict, count: int) -> str:
    """``vector`` when ``count`` images cost less one by one than as one batch."""
    slots = int(spec["params"]["n"]) // 2
    batches = math.ceil(count / slots)
    return "vector" if count * spec["cost"]["vector"] < batches * spec["cost"]["batch"] else "batch"


@dataclass
class Timing:
    encrypt_s: float = 0.0
    decrypt_s: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0


class Client:
    """The data owner: keys made for a server's :meth:`EncryptedModel.spec`."""

    def __init__(self, spec: dict, packings: tuple[str, ...] = PACKINGS):
        self.spec = spec
        self.params = Params.from_dict(spec["params"])
        steps = spec["rotation_steps"] if "vector" in packings else ()
        self.context = Context(self.params, steps)
        self.input_size = math.prod(spec["input_shape"])
        self.timing = Timing()
        self._public: bytes | None = None

    def public_bytes(self) -> bytes:
        if self._public is None:
            self._public = self.context.public_bytes()
        return self._public

    def public(self) -> PublicContext:
        """The public context as a server reads it (for in-process use and tests)."""
        return PublicContext.from_bytes(self.public_bytes())

    def encrypt(self, images: np.ndarray, packing: str = "auto") -> bytes:
        x = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
        if x.shape[1] != self.input_size:
            raise HEError(f"images have {x.shape[1]} values; the model takes {self.input_size}")
        if packing == "auto":
            packing = choose_packing(self.spec, len(x))
        start = time.perf_counter()
        if packing == "batch":
            cts = [self.context.encrypt(col) for col in batch_columns(x, self.params.slots)]
        elif packing == "vector":
            plan = self.spec["vector"]
            cts = [self.context.encrypt(v) for image in x for v in layout_vectors(plan, image)]
        else:
            raise HEError(f"unknown packing {packing!r}; use auto, batch or vector")
        data = ciphertexts_bytes(cts, {"packing": packing, "count": len(x)})
        self.timing.encrypt_s += time.perf_counter() - start
        self.timing.bytes_sent += len(data)
        return data

    def decrypt(self, reply: bytes) -> np.ndarray:
        """Logits (count, classes) from the server's reply; argmax is the prediction."""
        start = time.perf_counter()
        self.timing.bytes_received += len(reply)
        header, blobs = unpack(reply, "ciphertexts")
        cts = self.context.ring.load_ciphertexts(blobs, fresh=False)
        count, classes = int(header["count"]), int(self.spec["num_classes"])
        if header.get("packing") == "batch":
            if len(cts) != classes:
                raise HEError(f"reply has {len(cts)} ciphertexts for {classes} classes")
            logits = np.stack([self.context.decrypt(ct)[:count] for ct in cts], axis=1)
        else:
            if len(cts) != count:
                raise HEError(f"reply has {len(cts)} ciphertexts for {count} images")
            logits = np.stack([vector_output(self.context.decrypt(ct), classes) for ct in cts])
        self.timing.decrypt_s += time.perf_counter() - start
        return logits


def guarantees(spec: dict, numbers: dict | None = None, step: str = "he") -> list:
    """The input- and output-privacy claims of a run, with its parameters and measurements."""
    from veil.core.guarantees import Guarantee

    p = spec["params"]
    parameters = {
        "scheme": "CKKS",
        "library": "Microsoft SEAL (tenseal.sealapi)",
        "ring_size": p["n"],
        "modulus_bits": p["bits"],
        "scale_bits": p["scale_bits"],
        "security_bits": 128,
        "depth": spec["depth"],
    }
    threat = (
        "semi-honest server that runs the model as given; the client keeps the secret key and "
        "never returns a decryption to the server; the server learns the input count, the "
        "packing and the timing, not the values"
    )
    claims = {
        "input": "the server computes on RLWE ciphertexts only (IND-CPA, 128-bit parameters)",
        "output": "the logits leave the server encrypted; only the key holder can read them",
    }
    evidence = {"input": {"server_context_has_secret_key": False}, "output": {}}
    return [
        Guarantee(
            guarantee=kind,
            mechanism="CKKS homomorphic encryption",
            claim=claim,
            threat_model=threat,
            parameters=parameters,
            numbers=dict(numbers or {}),
            evidence=evidence[kind],
            step=step,
        )
        for kind, claim in claims.items()
    ]


def run_local(
    model: EncryptedModel, images: np.ndarray, packing: str = "auto", batch: int | None = None
) -> tuple[np.ndarray, Client, float]:
    """Client and server in one process (tests, benchmarks, pipeline): logits, the client,
    and the server's evaluation seconds."""
    client = Client(model.spec(), (packing,) if packing != "auto" else PACKINGS)
    public = client.public()
    x = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    chosen = choose_packing(model.spec(), len(x)) if packing == "auto" else packing
    size = batch or (client.params.slots if chosen == "batch" else 1)
    parts, server_s = [], 0.0
    for start in range(0, len(x), size):
        request = client.encrypt(x[start : start + size], packing)
        t = time.perf_counter()
        reply = model.evaluate(public, request)
        server_s += time.perf_counter() - t
        parts.append(client.decrypt(reply))
    return np.concatenate(parts), client, server_s
