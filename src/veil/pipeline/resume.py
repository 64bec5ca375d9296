"""What lets a rerun skip finished steps: a fingerprint per step and its saved outcome.

A step's fingerprint hashes its kind and settings, the scenario seed, veil's version and
code (every file of the package, by content), the content of any file a setting names (a
key, an image, a cover folder's files) and, for each step it uses, that step's fingerprint
and output digest: a change upstream (in settings, code or output bytes) reruns everything
downstream. When a step finishes, ``<out>/steps/<id>.json`` keeps its fingerprint, the
ledger entries and records it added, and its output (kind, path, facts, content digest). A
rerun takes a step's saved outcome only when the fingerprint matches and the output on disk
still has its digest: an interrupted run resumes without redoing finished steps, and a
changed or deleted output is made again. The files are JSON, never unpickled.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from veil.core.errors import VeilError
from veil.core.guarantees import Ledger
from veil.core.io import sha256_file
from veil.pipeline.scenario import StepConfig
from veil.pipeline.steps import Artifact

STATE_DIR = "steps"
STATE_VERSION = 1


def digest(path: Path) -> str:
    """SHA-256 of a file, or of a folder's files (names and contents, sorted)."""
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(f"{p.relative_to(path)}\0{sha256_file(p)}\n".encode())
    return h.hexdigest()


def _named_files(settings: dict) -> dict[str, str]:
    """Digests of the existing files and folders that string settings name."""
    found = {}
    for key, value in settings.items():
        if isinstance(value, str) and len(value) < 4096 and ("/" in value or "." in value):
            path = Path(value)
            if path.exists():
                found[key] = digest(path)
    return found


@functools.cache
def code_digest() -> str:
    """SHA-256 of veil's own code (its .py files and shipped data, by content): a changed
    veil, even at the same version number (a development checkout), reruns every step."""
    import veil

    root = Path(veil.__file__).parent
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file() and "__pycache__" not in q.parts):
        h.update(f"{p.relative_to(root)}\0{sha256_file(p)}\n".encode())
    return h.hexdigest()


def fingerprint(step: StepConfig, seed: int, upstream: dict[str, str]) -> str:
    """The hash that decides whether ``step``'s saved outcome still stands (see above)."""
    from veil import __version__

    settings = step.model_dump(mode="json")
    doc = {
        "settings": settings,
        "files": _named_files(settings),
        "seed": seed,
        "veil": [__version__, code_digest()],
        "uses": {field: upstream[name] for field, (name, _) in sorted(step.references().items())},
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def identity(mark: str, output_digest: str | None) -> str:
    """What later steps' fingerprints take from a finished step: its fingerprint and the
    digest of its output, so a step that reran and wrote different bytes reruns its users."""
    if output_digest is None:
        return mark
    return hashlib.sha256(f"{mark}:{output_digest}".encode()).hexdigest()


def state_path(out: Path, step_id: str) -> Path:
    return out / STATE_DIR / f"{step_id}.json"


def save(out: Path, step_id: str, mark: str, part: Ledger, artifact: Artifact | None) -> str | None:
    """Keep a finished step's outcome: its ledger part and its output; return the output's
    digest (None when it wrote no file)."""
    from veil.core.io import atomic_write

    saved = None
    if artifact is not None:
        path = artifact.path
        saved = {"kind": artifact.kind, "meta": artifact.meta, "path": None, "digest": None}
        if path is not None:
            saved["path"] = str(path.resolve().relative_to(out.resolve()))
            saved["digest"] = digest(path)
    doc = {"veil_step_state": STATE_VERSION, "fingerprint": mark, "ledger": part.to_dict(),
           "artifact": saved}  # fmt: skip
    state_path(out, step_id).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(state_path(out, step_id), json.dumps(doc, allow_nan=False))
    return saved["digest"] if saved else None


def load(out: Path, step_id: str, mark: str):
    """A finished step's saved outcome if it still stands - its ledger part, its output and
    the output's digest - else None (the step reruns)."""
    try:
        doc = json.loads(state_path(out, step_id).read_text())
        if doc.get("veil_step_state") != STATE_VERSION or doc.get("fingerprint") != mark:
            return None
        part = Ledger.from_dict(doc["ledger"])
        saved = doc["artifact"]
    except (OSError, ValueError, KeyError, TypeError, VeilError):
        return None
    if saved is None:
        return part, None, None
    path = out / saved["path"] if saved["path"] is not None else None
    if path is not None and (
        out.resolve() not in path.resolve().parents
        or not path.exists()
        or digest(path) != saved["digest"]
    ):
        return None
    return part, Artifact(saved["kind"], path, saved["meta"]), saved["digest"]
