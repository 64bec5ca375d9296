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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from veil.core.errors import ModelFileError, refuse_overwrite

if TYPE_CHECKING:  # torch is imported only by the functions that need it
    from torch import nn

    from veil.core.models import ModelSpec

FORMAT = "veil-model"
FORMAT_VERSION = 1
HEADER_KEY = "veil"


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename: never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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


def read_header(path: str | Path) -> dict:
    """The JSON header of a veil model file, validated; tensors are not read."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{path} is not a veil model file: not safetensors ({e})") from e
    return _parse_header(path, meta)


def _parse_header(path: Path, meta: dict) -> dict:
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


def load_model(path: str | Path, device: str = "cpu") -> LoadedModel:
    """Rebuild the network a model file describes and load its weights, checking every shape."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from veil.core.models import ModelSpec

    header = read_header(path)
    spec = ModelSpec.from_dict(header.get("model", {}))
    model = spec.build()
    try:
        tensors = load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{path}: weights cannot be read ({e})") from e
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != found:
        diff = sorted(set(expected.items()) ^ set(found.items()))[:3]
        raise ModelFileError(f"{path}: weights do not fit {spec.name}: differing {diff}")
    model.load_state_dict(tensors, strict=True)
    return LoadedModel(model.to(device).eval(), spec, header["classes"], header["extra"])


def state_bytes(model: nn.Module) -> int:
    """Size of the model's weights in bytes."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def tensors_equal(a: nn.Module, b: nn.Module) -> bool:
    """Whether two networks hold exactly the same weights."""
    import torch

    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
