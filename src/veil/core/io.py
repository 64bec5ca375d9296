"""Model files (safetensors weights plus a JSON header) and atomic JSON writes.

A veil model file (``.veil``) is a safetensors file whose metadata holds, under the key
``veil``, a JSON header: the architecture (a :class:`ModelSpec`), class names, the veil
version and free-form ``extra`` facts. Loading rebuilds the network from the header and
checks every tensor's name and shape; nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from veil.core.errors import ModelFileError, refuse_overwrite

if TYPE_CHECKING:  # torch is imported only by the functions that need it
    from torch import nn

    from veil.core.models import ModelSpec

FORMAT = "veil-model"
FORMAT_VERSION = 1
HEADER_KEY = "veil"


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file's contents (hex), read in 1 MiB chunks; OSError if unreadable."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename: never half a file."""
    with atomic_writer(path) as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return Path(path)


@contextmanager
def atomic_writer(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file that appears at ``path`` only when the block ends without an error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_private(path: str | Path, text: str) -> Path:
    """Write a secret (key, token) readable by its owner only (0600 from the start)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return Path(path)


def write_json(path: str | Path, obj) -> Path:
    """Write ``obj`` as indented JSON, atomically; NaN and infinities are refused."""
    return atomic_write(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


@dataclass
class LoadedModel:
    """A network rebuilt from a model file, with its spec and header."""

    model: nn.Module
    spec: ModelSpec
    classes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    path: str = "model"

    def data_name(self, override: str | None = None, hint: str = "pass the data set") -> str:
        """``override``, else the data set the header says the model was trained on."""
        from veil.core.errors import DataError

        name = override or self.extra.get("data")
        if not name:
            raise DataError(f"{self.path} does not say which data it was trained on; {hint}")
        return name


def save_model(
    path: str | Path,
    model: nn.Module,
    spec: ModelSpec,
    *,
    classes: list[str] | None = None,
    extra: dict | None = None,
    force: bool = False,
) -> Path:
    """Save ``model``'s weights and header to ``path``; refuse to overwrite unless ``force``."""
    from safetensors.torch import save

    from veil import __version__

    refuse_overwrite(path, force)
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "veil_version": __version__,
        "model": spec.to_dict(),
        "classes": list(classes or []),
        "extra": extra or {},
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = save(tensors, metadata={HEADER_KEY: json.dumps(header, allow_nan=False)})
    return atomic_write(path, blob)


MAX_HEADER = 100 << 20  # safetensors' own limit on the JSON header


def _metadata(head: bytes, name: str) -> dict:
    """The ``__metadata__`` of a safetensors header (8-byte little-endian size, then JSON)."""
    if len(head) < 8:
        raise ModelFileError(f"{name} is not a veil model file: too short")
    size = int.from_bytes(head[:8], "little")
    if size > MAX_HEADER or len(head) < 8 + size:
        raise ModelFileError(f"{name} is not a veil model file: not safetensors (bad header size)")
    try:
        doc = json.loads(head[8 : 8 + size])
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{name} is not a veil model file: not safetensors ({e})") from e
    meta = doc.get("__metadata__", {}) if isinstance(doc, dict) else None
    if not isinstance(meta, dict):
        raise ModelFileError(f"{name} is not a veil model file: malformed safetensors header")
    return meta


def read_header(path: str | Path) -> dict:
    """The JSON header of a veil model file, validated; tensors are not read."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            f.seek(0)
            head = f.read(8 + min(size, MAX_HEADER))
    except OSError as e:
        raise ModelFileError(f"cannot read {path}: {e}") from e
    return _parse_header(path, _metadata(head, str(path)))


def _parse_header(path, meta: dict) -> dict:
    if HEADER_KEY not in meta:
        raise ModelFileError(f"{path} is a safetensors file without a veil header")
    try:
        header = json.loads(meta[HEADER_KEY])
    except json.JSONDecodeError as e:
        raise ModelFileError(f"{path}: veil header is not JSON ({e})") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a veil model file: bad format field")
    if header.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model format version {header.get('format_version')} is not supported "
            f"(this veil reads {FORMAT_VERSION})"
        )
    return header


def load_model_bytes(blob: bytes, name: str = "model", device: str = "cpu") -> LoadedModel:
    """Rebuild a network from the bytes of a veil model file (e.g. just unsealed, in memory)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    from veil.core.models import ModelSpec

    header = _parse_header(name, _metadata(blob, name))
    spec = ModelSpec.from_dict(header.get("model", {}))
    model = spec.build()
    try:
        tensors = load(blob)
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{name}: weights cannot be read ({e})") from e
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != found:
        diff = sorted(set(expected.items()) ^ set(found.items()))[:3]
        raise ModelFileError(f"{name}: weights do not fit {spec.name}: differing {diff}")
    model.load_state_dict(tensors, strict=True)
    return LoadedModel(model.to(device).eval(), spec, header["classes"], header["extra"], name)


def load_model(path: str | Path, device: str = "cpu") -> LoadedModel:
    """Rebuild the network a model file describes and load its weights, checking every shape."""
    read_header(path)  # a clear error before reading a large foreign file
    try:
        blob = Path(path).read_bytes()
    except OSError as e:
        raise ModelFileError(f"cannot read {path}: {e}") from e
    return load_model_bytes(blob, str(path), device)


def tensors_equal(a: nn.Module, b: nn.Module) -> bool:
    """Whether two networks hold exactly the same weights."""
    import torch

    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def save_arrays(path: str | Path, arrays: dict, meta: dict, kind: str) -> Path:
    """Write NumPy ``arrays`` and a JSON ``meta`` (tagged ``kind``) as one safetensors file,
    atomically: the form of every checkpoint veil writes (nothing pickled)."""
    from safetensors.numpy import save

    header = json.dumps({"format": kind, **meta}, allow_nan=False)
    return atomic_write(path, save(arrays, metadata={HEADER_KEY: header}))


def load_arrays(path: str | Path, kind: str) -> tuple[dict, dict]:
    """The arrays and JSON meta of a file written by :func:`save_arrays` as ``kind``."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ModelFileError(f"cannot read {path}: {e}") from e
    meta = _metadata(raw[: 8 + MAX_HEADER], str(path))
    try:
        header = json.loads(meta.get(HEADER_KEY, "{}"))
        arrays = load(raw)
    except (json.JSONDecodeError, SafetensorError) as e:
        raise ModelFileError(f"{path} is not a {kind} file: {e}") from e
    if not isinstance(header, dict) or header.get("format") != kind:
        raise ModelFileError(f"{path} is not a {kind} file")
    return arrays, header


def save_trained_files(
    out: Path, ledger_path: Path, prepared, record, title: str, guarantee=None, command=""
) -> None:
    """A trained network's model file and a ledger holding its record (and guarantee).

    ``prepared`` is a :class:`veil.core.train.Prepared` (model, spec, train set, subset).
    """
    from veil.core.guarantees import Ledger

    save_model(
        out,
        prepared.model,
        prepared.spec,
        classes=list(prepared.train.classes),
        extra={"data": prepared.train.name, "train_subset": prepared.subset},
        force=True,
    )
    run_ledger = Ledger.start(title, command=command)
    if guarantee is not None:
        run_ledger.add(guarantee)
    run_ledger.record(record)
    run_ledger.artifacts["model"] = str(out)
    run_ledger.finish(status="ok")
    run_ledger.save(ledger_path)
