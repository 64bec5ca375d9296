"""CKKS parameters, keys and ciphertext bytes: a small safe layer over the SEAL that TenSEAL ships.

veil evaluates on ``tenseal.sealapi`` (Microsoft SEAL's own API, bundled with TenSEAL) rather
than on TenSEAL's ``CKKSVector``/``CKKSTensor``: their operators rescale after every product,
and a batched 784x128 layer through ``CKKSTensor.mm`` took 29 s per 4096 images here (290 us
per weight). Accumulating products and rescaling once per output is the difference between
7 ms and under 1 ms per image (see ``benchmarks/bench_he.py``).

Security: parameters are checked against the 128-bit bounds of the Homomorphic Encryption
Standard (total modulus bits per ring size, :data:`SECURITY_BITS`) and SEAL itself refuses
anything weaker (``sec_level=tc128``). :class:`Context` (client) holds the secret key;
:meth:`Context.public_bytes` writes only the parameters and public, relinearisation and
rotation keys, and :class:`PublicContext` (server) is built from those bytes alone.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import math
import os
import secrets
import shutil
import struct
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from veil.core.errors import VeilError

# Largest total coefficient-modulus bits for 128-bit classical security (HE Standard, 2018),
# by polynomial degree N. SEAL's CoeffModulus.MaxBitCount gives the same table.
SECURITY_BITS = {4096: 109, 8192: 218, 16384: 438, 32768: 881}
MAGIC = b"VEILHE\x01"
MAX_HEADER = 1 << 20
PUBLIC_PARTS = ("params", "public", "relin", "galois")


class HEError(VeilError):
    """Homomorphic-encryption input that veil refuses: bad parameters, bytes or ciphertexts."""


@dataclass(frozen=True)
class Params:
    """A CKKS parameter set: ring size ``n``, modulus chain bit sizes, and the scale 2^scale_bits.

    ``bits`` is (first prime, one prime per multiplicative level, special prime); the first
    prime is larger than the scale by the integer headroom the values need.
    """

    n: int
    bits: tuple[int, ...]
    scale_bits: int

    def __post_init__(self):
        if self.n not in SECURITY_BITS:
            raise HEError(f"ring size {self.n} not supported; use one of {sorted(SECURITY_BITS)}")
        if len(self.bits) < 3 or any(not 20 <= b <= 60 for b in self.bits):
            raise HEError(f"modulus chain {self.bits} must have >= 3 primes of 20..60 bits")
        if self.total_bits > SECURITY_BITS[self.n]:
            raise HEError(
                f"modulus chain of {self.total_bits} bits exceeds the 128-bit security bound "
                f"of {SECURITY_BITS[self.n]} bits at N={self.n}"
            )
        if not 20 <= self.scale_bits <= min(self.bits[1:-1]):
            raise HEError(f"scale 2^{self.scale_bits} must not exceed the level primes")

    @property
    def slots(self) -> int:
        return self.n // 2

    @property
    def levels(self) -> int:
        return len(self.bits) - 2

    @property
    def total_bits(self) -> int:
        return sum(self.bits)

    @property
    def scale(self) -> float:
        return float(2**self.scale_bits)

    def to_dict(self) -> dict:
        return {
            "scheme": "CKKS",
            "n": self.n,
            "bits": list(self.bits),
            "scale_bits": self.scale_bits,
            "security_bits": 128,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Params:
        try:
            return cls(int(d["n"]), tuple(int(b) for b in d["bits"]), int(d["scale_bits"]))
        except (KeyError, TypeError, ValueError) as e:
            raise HEError(f"bad CKKS parameters {d!r}: {e}") from e


def choose_params(depth: int, headroom_bits: int = 20, min_scale_bits: int = 30) -> Params:
    """The smallest ring (then the largest scale, 40 down to ``min_scale_bits``) that fits
    ``depth`` levels within 128-bit security; error if even N=32768 cannot."""
    if depth < 1:
        raise HEError("a model needs at least one multiplicative level")
    for n in sorted(SECURITY_BITS):
        for scale in range(40, min_scale_bits - 1, -5):
            first = min(60, scale + headroom_bits)
            bits = (first, *([scale] * depth), first)
            if sum(bits) <= SECURITY_BITS[n]:
                return Params(n, bits, scale)
    most = max_depth(headroom_bits, min_scale_bits)
    raise HEError(f"depth {depth} exceeds the {most} levels 128-bit security allows at N=32768")


def max_depth(headroom_bits: int = 20, min_scale_bits: int = 30) -> int:
    """The most levels any ring allows within 128-bit security at these sizes."""
    first = min(60, min_scale_bits + headroom_bits)
    return (SECURITY_BITS[max(SECURITY_BITS)] - 2 * first) // min_scale_bits


def headroom_bits(model, sample: np.ndarray | None = None, margin: int = 8) -> int:
    """Integer bits the first prime needs above the scale: 20 by default, or enough for the
    largest intermediate value ``sample`` inputs reach, with ``margin`` bits to spare."""
    if sample is None or len(sample) == 0:
        return 20
    h, peak = np.asarray(sample, dtype=np.float64).reshape(len(sample), -1), 1.0
    for stage in model.stages:
        h = stage.apply(h)
        peak = max(peak, float(np.abs(h).max()))
    return int(min(40, max(20, math.ceil(math.log2(peak)) + margin)))


def _compiled(model, input_shape):
    from veil.encrypted.he.compiler import Compiled, compile_model

    if isinstance(model, Compiled):
        return model
    if input_shape is None:
        raise HEError("Context.for_model needs input_shape for a torch model")
    return compile_model(model, input_shape)


# -- the container every HE message uses: magic, JSON header, length-prefixed blobs ----------


def pack(kind: str, header: dict, blobs: Sequence[bytes]) -> bytes:
    """Serialise ``blobs`` with a JSON ``header`` under a ``kind`` tag (no pickle anywhere).

    Each blob's SHA-256 goes in the header: CKKS ciphertexts are malleable and SEAL accepts a
    flipped coefficient, so corruption or tampering that leaves the header alone is caught
    here; an active attacker on the wire is TLS's and the service's HMAC's job.
    """
    head = json.dumps(
        {
            **header,
            "kind": kind,
            "sizes": [len(b) for b in blobs],
            "sha256": [hashlib.sha256(b).hexdigest() for b in blobs],
        }
    ).encode()
    return MAGIC + struct.pack(">I", len(head)) + head + b"".join(blobs)


def unpack(data: bytes, kind: str, max_blobs: int = 1 << 16) -> tuple[dict, list[bytes]]:
    """Parse :func:`pack` output, refusing anything malformed, of another kind, or trailing."""
    view = memoryview(data)
    if len(view) < len(MAGIC) + 4 or bytes(view[: len(MAGIC)]) != MAGIC:
        raise HEError(f"not a veil HE {kind}: bad magic")
    (size,) = struct.unpack(">I", view[len(MAGIC) : len(MAGIC) + 4])
    start = len(MAGIC) + 4
    if size > MAX_HEADER or start + size > len(view):
        raise HEError(f"veil HE {kind}: header length {size} out of range")
    try:
        header = json.loads(bytes(view[start : start + size]))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HEError(f"veil HE {kind}: header is not JSON: {e}") from e
    if not isinstance(header, dict) or header.get("kind") != kind:
        raise HEError(f"expected a veil HE {kind}, got {header.get('kind')!r}"[:200])
    sizes = header.get("sizes")
    if (
        not isinstance(sizes, list)
        or len(sizes) > max_blobs
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in sizes)
    ):
        raise HEError(f"veil HE {kind}: bad blob sizes")
    pos = start + size
    if pos + sum(sizes) != len(view):
        raise HEError(f"veil HE {kind}: {len(view) - pos} payload bytes, header says {sum(sizes)}")
    digests = header.get("sha256")
    if not isinstance(digests, list) or len(digests) != len(sizes):
        raise HEError(f"veil HE {kind}: missing blob digests")
    blobs = []
    for i, (s, digest) in enumerate(zip(sizes, digests, strict=True)):
        blob = bytes(view[pos : pos + s])
        if not isinstance(digest, str) or not hmac.compare_digest(
            hashlib.sha256(blob).hexdigest(), digest
        ):
            raise HEError(f"veil HE {kind}: blob {i} (ciphertext or key) was altered")
        blobs.append(blob)
        pos += s
    return header, blobs


# -- SEAL objects to and from bytes (sealapi saves to paths only: a private scratch folder) --

_SCRATCH: list[Path] = []


def scratch() -> Path:
    """This process's private folder for SEAL's file-based (de)serialisation."""
    if not _SCRATCH:
        base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        path = Path(tempfile.mkdtemp(prefix="veil-he-", dir=base))
        atexit.register(shutil.rmtree, path, True)
        _SCRATCH.append(path)
    return _SCRATCH[0]


def to_bytes(obj) -> bytes:
    path = scratch() / secrets.token_hex(8)
    try:
        obj.save(str(path))
        return path.read_bytes()
    finally:
        path.unlink(missing_ok=True)


def from_bytes(obj, data: bytes, *context):
    """Load SEAL object ``obj`` from ``data``; SEAL validates it against ``context``."""
    path = scratch() / secrets.token_hex(8)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        obj.load(*context, str(path))
    except (RuntimeError, ValueError, TypeError) as e:
        raise HEError(f"cannot read {type(obj).__name__}: {e}") from e
    finally:
        path.unlink(missing_ok=True)
    return obj


class Ring:
    """The public half of a CKKS set-up: parameters, SEAL context, encoder and evaluator."""

    def __init__(self, params: Params, seal_params=None):
        from tenseal import sealapi

        self.sealapi = sealapi
        self.params = params
        if seal_params is None:
            seal_params = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.CKKS)
            seal_params.set_poly_modulus_degree(params.n)
            seal_params.set_coeff_modulus(sealapi.CoeffModulus.Create(params.n, list(params.bits)))
        self.seal_params = seal_params
        self.context = sealapi.SEALContext(seal_params, True, sealapi.SEC_LEVEL_TYPE.TC128)
        if not self.context.parameters_set():
            raise HEError(f"SEAL refuses {params}: {self.context.parameters_error_message()}")
        self.encoder = sealapi.CKKSEncoder(self.context)
        self.evaluator = sealapi.Evaluator(self.context)

    def plain(self, values, parms_id, scale: float):
        """Encode a constant (a float) or a slot vector at ``scale`` and level ``parms_id``."""
        pt = self.sealapi.Plaintext()
        if isinstance(values, np.ndarray):
            values = values.tolist()
        self.encoder.encode(values, parms_id, scale, pt)
        return pt

    def ciphertext(self):
        return self.sealapi.Ciphertext()

    def check_ciphertext(self, ct, i: int) -> None:
        """A ciphertext fresh from a client: top level, two polynomials, the agreed scale."""
        if list(ct.parms_id()) != list(self.context.first_parms_id()):
            raise HEError(f"ciphertext {i} is not at this context's top level")
        if ct.size() != 2 or not ct.is_ntt_form():
            raise HEError(f"ciphertext {i} is not a fresh CKKS ciphertext (size {ct.size()})")
        if not math.isclose(ct.scale, self.params.scale, rel_tol=1e-9):
            raise HEError(
                f"ciphertext {i} has scale {ct.scale}, context says 2^{self.params.scale_bits}"
            )

    def load_ciphertexts(self, blobs: Sequence[bytes], fresh: bool = True) -> list:
        """Ciphertexts SEAL validates against this context; ``fresh`` ones (a client's
        request) must also sit at the top level with the agreed scale."""
        cts = []
        for i, blob in enumerate(blobs):
            ct = from_bytes(self.ciphertext(), blob, self.context)
            if fresh:
                self.check_ciphertext(ct, i)
            elif ct.size() != 2:
                raise HEError(f"ciphertext {i} has {ct.size()} polynomials, expected 2")
            cts.append(ct)
        return cts


class PublicContext:
    """What a server holds: parameters, public key, relinearisation and rotation keys.

    It is built from :meth:`Context.public_bytes` and has no secret key by construction;
    :meth:`assert_public` checks it anyway before a service uses it.
    """

    def __init__(self, ring: Ring, public_key, relin_keys, galois_keys, steps: Sequence[int]):
        self.ring = ring
        self.params = ring.params
        self.public_key = public_key
        self.relin_keys = relin_keys
        self.galois_keys = galois_keys
        self.steps = tuple(sorted(set(int(s) for s in steps)))

    @property
    def has_secret_key(self) -> bool:
        return any(hasattr(self, a) for a in ("secret_key", "decryptor"))

    def assert_public(self) -> PublicContext:
        if self.has_secret_key:
            raise HEError("a server context must not hold the secret key")
        return self

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicContext:
        header, blobs = unpack(data, "public context", max_blobs=len(PUBLIC_PARTS))
        parts = header.get("parts")
        if not isinstance(parts, list) or len(parts) != len(blobs):
            raise HEError("public context: parts do not match its blobs")
        if any(p not in PUBLIC_PARTS for p in parts) or len(set(parts)) != len(parts):
            raise HEError(f"public context may hold only {PUBLIC_PARTS}, got {parts}"[:200])
        found = dict(zip(parts, blobs, strict=True))
        if "params" not in found or "relin" not in found:
            raise HEError("public context lacks its parameters or relinearisation keys")
        params = Params.from_dict(header.get("params", {}))
        ring = Ring(params, _load_params(found["params"], params))
        s = ring.sealapi
        public = (
            from_bytes(s.PublicKey(), found["public"], ring.context) if "public" in found else None
        )
        relin = from_bytes(s.RelinKeys(), found["relin"], ring.context)
        galois = (
            from_bytes(s.GaloisKeys(), found["galois"], ring.context) if "galois" in found else None
        )
        steps = header.get("steps", [])
        if not isinstance(steps, list) or not all(isinstance(x, int) for x in steps):
            raise HEError("public context: bad rotation steps")
        if steps and galois is None:
            raise HEError("public context names rotation steps but carries no rotation keys")
        return cls(ring, public, relin, galois, steps).assert_public()

    def digest(self) -> str:
        """A short identifier of these keys (for caching contexts server side)."""
        return hashlib.sha256(to_bytes(self.relin_keys)).hexdigest()[:16]


def _load_params(blob: bytes, expected: Params):
    from tenseal import sealapi

    seal_params = from_bytes(sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.CKKS), blob)
    if seal_params.poly_modulus_degree() != expected.n:
        raise HEError("public context: ring size differs from its header")
    got = [m.bit_count() for m in seal_params.coeff_modulus()]
    if got != list(expected.bits):
        raise HEError(f"public context: modulus chain {got} differs from its header")
    return seal_params


def galois_element(step: int, n: int) -> int:
    """SEAL's Galois element for a left rotation by ``step`` slots (negative: right).

    Passed as elements, not steps: the binding picks its overload by value, and a list of
    positive steps would be read as elements.
    """
    half = n // 2
    if step == 0 or abs(step) >= half:
        raise HEError(f"rotation by {step} is outside 1..{half - 1} slots")
    return pow(3, step % half, 2 * n)


class Context:
    """The client's CKKS keys: encrypts, decrypts, and exports only the public part.

    Example::

        ctx = Context(choose_params(depth=3))
        server_ctx = PublicContext.from_bytes(ctx.public_bytes())   # what the server gets
        ct = ctx.encrypt(np.ones(ctx.params.slots))
    """

    def __init__(self, params: Params, steps: Sequence[int] = ()):
        self.ring = Ring(params)
        self.params = params
        s = self.ring.sealapi
        keygen = s.KeyGenerator(self.ring.context)
        self.public_key = s.PublicKey()
        keygen.create_public_key(self.public_key)
        self.relin_keys = s.RelinKeys()
        keygen.create_relin_keys(self.relin_keys)
        self.steps = tuple(sorted(set(int(x) for x in steps)))
        self.galois_keys = None
        if self.steps:
            self.galois_keys = s.GaloisKeys()
            elements = [galois_element(step, params.n) for step in self.steps]
            keygen.create_galois_keys(elements, self.galois_keys)
        # Symmetric encryption under the secret key: the same RLWE security, 2.4x faster than
        # public-key encryption here (1.3 vs 3.1 ms at N=8192); only the key holder encrypts.
        self._encryptor = s.Encryptor(self.ring.context, keygen.secret_key())
        self._decryptor = s.Decryptor(self.ring.context, keygen.secret_key())

    @classmethod
    def for_model(
        cls,
        model,
        packing: Sequence[str] = ("batch", "vector"),
        sample: np.ndarray | None = None,
        min_scale_bits: int = 30,
        input_shape: tuple[int, ...] | None = None,
    ) -> Context:
        """Keys sized for ``model`` (a torch model or a compiled one): its depth picks the ring,
        modulus chain and scale within 128-bit security; ``sample`` inputs size the integer
        headroom; vector packing adds exactly the rotation keys its plan uses."""
        from veil.encrypted.he.packing import VectorPlan

        compiled = _compiled(model, input_shape)
        headroom = headroom_bits(compiled, sample)
        try:
            params = choose_params(compiled.depth, headroom, min_scale_bits)
        except HEError as e:
            most = max_depth(headroom, min_scale_bits)
            layers = ", ".join(compiled.stages[most].layers)
            raise HEError(f"{e}; the stage from layer(s) {layers} is one too many") from e
        steps = VectorPlan(compiled, params.slots).rotation_steps() if "vector" in packing else ()
        return cls(params, steps)

    def public_bytes(self) -> bytes:
        """Parameters and public keys only: what may be sent to a server."""
        parts = {
            "params": self.ring.seal_params,
            "public": self.public_key,
            "relin": self.relin_keys,
        }
        if self.galois_keys is not None:
            parts["galois"] = self.galois_keys
        header = {"params": self.params.to_dict(), "parts": list(parts), "steps": list(self.steps)}
        return pack("public context", header, [to_bytes(v) for v in parts.values()])

    def public(self) -> PublicContext:
        """The same keys as a server would hold them (for in-process evaluation)."""
        return PublicContext(
            self.ring, self.public_key, self.relin_keys, self.galois_keys, self.steps
        )

    def encrypt(self, values: np.ndarray):
        values = np.asarray(values, dtype=np.float64).ravel()
        if values.size > self.params.slots:
            raise HEError(f"{values.size} values do not fit {self.params.slots} slots")
        if not np.all(np.isfinite(values)):
            raise HEError("cannot encrypt NaN or infinite values")
        pt = self.ring.sealapi.Plaintext()
        self.ring.encoder.encode(values.tolist(), self.params.scale, pt)
        ct = self.ring.ciphertext()
        self._encryptor.encrypt_symmetric(pt, ct)
        return ct

    def decrypt(self, ct) -> np.ndarray:
        pt = self.ring.sealapi.Plaintext()
        self._decryptor.decrypt(ct, pt)
        return np.asarray(self.ring.encoder.decode_double(pt))


def ciphertexts_bytes(cts: Sequence, header: dict | None = None) -> bytes:
    """Ciphertexts (and a JSON header) as one message."""
    return pack("ciphertexts", dict(header or {}), [to_bytes(c) for c in cts])
