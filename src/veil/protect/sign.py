"""Signed model manifests: Ed25519 over the SHA-256 digests of a model's files.

In the spirit of OpenSSF model signing: the signature covers a manifest (file names and
digests), so a model of several files is verified as a whole, and verification happens
before anything is loaded. Trust is in the signer's public key, obtained out of band.
"""

from __future__ import annotations

import json
from pathlib import Path

from veil.core.errors import VeilError, refuse_overwrite
from veil.protect import keys


class SignatureError(VeilError):
    """A manifest that does not verify, or files that do not match it."""


def _digest(path: Path) -> str:
    from veil.core.io import sha256_file

    try:
        return sha256_file(path)
    except OSError as e:
        raise SignatureError(f"cannot read {path}: {e}") from e


def _canonical(files: list[dict]) -> bytes:
    return json.dumps(
        {"veil_manifest": 1, "files": files}, sort_keys=True, separators=(",", ":")
    ).encode()


def sign(
    paths: list[str | Path], private_key: str | Path, out: str | Path, force: bool = False
) -> Path:
    """Write a signed manifest of ``paths`` (names relative to the manifest's folder)."""
    from veil.core.io import write_json

    refuse_overwrite(out, force)
    key = keys.load(private_key, "ed25519", private=True)
    base = Path(out).resolve().parent
    files = []
    for p in sorted(Path(p).resolve() for p in paths):
        try:
            name = str(p.relative_to(base))
        except ValueError as e:
            raise SignatureError(f"{p} is outside the manifest's folder {base}") from e
        files.append({"name": name, "sha256": _digest(p)})
    signature = key.sign(_canonical(files))
    return write_json(
        out,
        {
            "veil_manifest": 1,
            "files": files,
            "signer": keys.public_bytes(key).hex(),
            "signature": signature.hex(),
        },
    )


def verify(manifest: str | Path, public_key: str | Path) -> list[str]:
    """Check the signature with ``public_key`` and every file's digest; return the files."""
    from cryptography.exceptions import InvalidSignature

    pub = keys.load(public_key, "ed25519", private=False)
    manifest = Path(manifest)
    try:
        doc = json.loads(manifest.read_text())
        files, signature = doc["files"], bytes.fromhex(doc["signature"])
        names = [(f["name"], f["sha256"]) for f in files]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SignatureError(f"{manifest} is not a veil signed manifest: {e}") from e
    try:
        pub.verify(signature, _canonical(files))
    except InvalidSignature as e:
        raise SignatureError(f"{manifest}: signature does not verify with {public_key}") from e
    base = manifest.resolve().parent
    for name, digest in names:
        target = (base / name).resolve()
        if base not in target.parents:
            raise SignatureError(f"{manifest} names {name}, outside its folder")
        if _digest(target) != digest:
            raise SignatureError(f"{name} does not match the signed manifest: modified")
    return [n for n, _ in names]


def signature_guarantee(manifest: str | Path, step: str = ""):
    """The model ledger entry for a signed manifest: who signed which files (integrity)."""
    from veil.core.guarantees import Guarantee

    doc = json.loads(Path(manifest).read_text())
    names = [f["name"] for f in doc["files"]]
    return Guarantee(
        guarantee="model",
        mechanism="Ed25519-signed manifest (SHA-256 per file)",
        claim=f"integrity and origin of {len(names)} file(s): a changed file or manifest fails "
        "`veil model verify` before anything is loaded",
        threat_model="the verifier gets the signer's public key out of band; the signing key "
        "stays secret; a signature says who published the files, not that they are private",
        parameters={"signer": doc["signer"], "digest": "SHA-256", "signature": "Ed25519"},
        numbers={"files": len(names)},
        evidence={"files": names},
        step=step,
    )
