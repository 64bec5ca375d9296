"""Model-protection steps: ``seal``, ``sign`` and ``watermark`` (veil.protect in a scenario).

Keys: a step takes a key file from the scenario (``to``, ``key``); without one it makes a
key pair for the run in ``<out>/keys/`` (private halves mode 0600) and the ledger says so.
In practice the recipient makes the sealing pair and sends only the ``.pub``; the signer
and the watermark owner keep their private keys out of the run folder.

Each step checks what it claims before it claims it: the sealed file opens with the
recipient's key to the same bytes and a changed byte is refused; the manifest verifies and a
changed digest is refused; the watermark answers its triggers.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from pydantic import Field

from veil.pipeline.scenario import ANY_FILE, StepConfig, ref
from veil.pipeline.steps import (
    Artifact,
    RunContext,
    TrainingFields,
    fit_plain,
    register_step,
    save_trained,
)

MADE_HERE = "made by this run in keys/ (a demo: the key's owner makes it in practice)"


def run_key(ctx: RunContext, step: str, kind: str) -> tuple[Path, Path | None]:
    """A fresh key pair of ``kind`` for ``step`` in ``<out>/keys/``: (private, public)."""
    from veil.protect.keys import generate

    return generate(ctx.key_path(step), kind, force=True)


def refused(action, error: type[Exception]) -> bool:
    """Whether ``action()`` raises ``error`` (a tampering check's outcome)."""
    try:
        action()
    except error:
        return True
    return False


# --- seal --------------------------------------------------------------------------------


class SealConfig(StepConfig):
    """Encrypt an earlier step's model for one recipient's X25519 key."""

    kind: Literal["seal"]
    uses: str = ref("model")
    to: str | None = None


@register_step("seal", SealConfig, produces="sealed")
def run_seal(cfg: SealConfig, ctx: RunContext) -> Artifact:
    from veil.protect import SealError, seal_file, seal_guarantee, unseal_bytes
    from veil.protect.keys import load

    model = ctx.artifact(cfg.uses, "model")
    private, public = (None, Path(cfg.to)) if cfg.to else run_key(ctx, cfg.id, "x25519")
    target = ctx.path_for("model", cfg.uses, ".veil.sealed")
    seal_file(model.path, public, target, force=True)
    blob = target.read_bytes()
    evidence = {"recipient_key": cfg.to or MADE_HERE}
    if private is not None:
        key = load(private, "x25519", private=True)
        evidence["opens_to_same_bytes"] = unseal_bytes(blob, key) == model.path.read_bytes()
        flipped = bytearray(blob)
        flipped[-1] ^= 1
        evidence["changed_byte_refused"] = refused(
            lambda: unseal_bytes(bytes(flipped), key), SealError
        )
    entry = seal_guarantee(f"model {cfg.uses}", blob, step=cfg.id)
    ctx.ledger.add(dataclasses.replace(entry, evidence=evidence))
    return Artifact("sealed", target, {"model": cfg.uses})


# --- sign --------------------------------------------------------------------------------


class SignConfig(StepConfig):
    """Sign a manifest of earlier steps' files (models, sealed models) with Ed25519."""

    kind: Literal["sign"]
    uses: list[str] = ref(ANY_FILE, min_length=1)
    key: str | None = None


@register_step("sign", SignConfig, produces="signature")
def run_sign(cfg: SignConfig, ctx: RunContext) -> Artifact:
    import json

    from veil.core.errors import ScenarioError
    from veil.protect import SignatureError, sign, signature_guarantee, verify

    if cfg.key and not Path(cfg.key).with_suffix(".pub").is_file():
        raise ScenarioError(f"step {cfg.id}: {cfg.key} needs its public half beside it (.pub)")
    private, public = (
        (Path(cfg.key), Path(cfg.key).with_suffix(".pub"))
        if cfg.key
        else run_key(ctx, cfg.id, "ed25519")
    )
    files = [ctx.artifact(name, ANY_FILE).path for name in cfg.uses]
    manifest = sign(files, private, ctx.out / f"{cfg.id}.sig.json", force=True)
    verify(manifest, public)
    doc = json.loads(manifest.read_text())
    doc["files"][0]["sha256"] = "0" * 64
    altered = manifest.with_name(f".{manifest.name}.altered")
    altered.write_text(json.dumps(doc))
    try:
        changed_refused = refused(lambda: verify(altered, public), SignatureError)
    finally:
        altered.unlink()
    entry = signature_guarantee(manifest, step=cfg.id)
    evidence = {**entry.evidence, "verified": True, "changed_digest_refused": changed_refused,
                "signing_key": cfg.key or MADE_HERE, "public_key": str(public)}  # fmt: skip
    ctx.ledger.add(dataclasses.replace(entry, evidence=evidence))
    return Artifact("signature", manifest, {"files": [str(f) for f in files]})


# --- watermark ---------------------------------------------------------------------------


class WatermarkConfig(TrainingFields):
    """Train a network that answers a secret, keyed trigger set (proof of ownership)."""

    kind: Literal["watermark"]
    triggers: int = Field(100, ge=10, le=10_000)
    key: str | None = None


@register_step("watermark", WatermarkConfig, produces="model")
def run_watermark(cfg: WatermarkConfig, ctx: RunContext) -> Artifact:
    from veil.protect.keys import load
    from veil.protect.watermark import ownership_guarantee, trigger_set, verify, with_triggers

    secret = load(cfg.key or run_key(ctx, cfg.id, "secret")[0], "secret", private=True)
    p = cfg.prepare(ctx)
    shape, classes = p.train.input_shape, p.train.num_classes
    marks = trigger_set(secret, shape, classes, cfg.triggers)
    trained = fit_plain(cfg, ctx, p, with_triggers(p.train, marks))
    verdict = verify(p.model, secret, shape, classes, cfg.triggers)
    entry = ownership_guarantee(verdict, cfg.triggers, step=cfg.id)
    ctx.ledger.add(dataclasses.replace(entry, evidence={"key": cfg.key or MADE_HERE}))
    return save_trained(ctx, cfg, trained, trained.record(cfg.id))
