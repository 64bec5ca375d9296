"""Model protection benchmarks: the scanner on a labelled corpus, and sealed-file tampering.

Scanner: synthetic app packages (zip/APK) built here from real model files veil writes
(safetensors, torch.save zips, ONNX-shaped protobuf, TFLite-headed flatbuffers), plus
compressed and encrypted blobs, keys beside models, pickles with and without payloads,
and non-model assets (random "images", dex-like bytes). Precision and recall of model
detection, of the protection label, and of unsafe-pickle findings; throughput in MB/s of
package bytes. Sealing: 10,000 random single-bit flips of a sealed `mnist-cnn` file, each
unsealed with the right key: all must be rejected.

Writes benchmarks/results/protect.json: scanner_precision, scanner_recall, scanner_mb_s,
tamper_trials, tamper_rejected_fraction (and per-finding figures, seal/unseal MB/s).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import common
from veil.core import models
from veil.core.io import save_model
from veil.protect import SealError, seal_bytes, unseal_bytes
from veil.protect.keys import generate, load

EVIL = b"\x80\x02cos\nsystem\nq\x00X\x07\x00\x00\x00echo hiq\x01\x85q\x02Rq\x03."


def _zip(members: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _real_models(tmp: Path) -> dict[str, bytes]:
    import io

    import torch

    spec = models.spec_of("mlp", (1, 8, 8), 10, hidden=[64])
    net = spec.build()
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    # an ONNX ModelProto: ir_version 8, producer "pytorch", graph {node {}}, opset_import {17}
    onnx_like = b"\x08\x08" + b"\x12\x07pytorch" + b"\x3a\x04\x0a\x02\x08\x01" + b"\x42\x02\x10\x11"
    return {
        "safetensors": save_model(tmp / "m.veil", net, spec).read_bytes(),
        "pytorch": buf.getvalue(),
        "onnx": onnx_like,
        "tflite": b"\x1c\x00\x00\x00TFL3" + os.urandom(50_000),
    }


def corpus(n_packages: int, tmp: Path, rng: random.Random):
    """Packages and their truth: {member: (is_model, protection or None)}, unsafe members."""
    import zlib

    real = _real_models(tmp)
    packages = []
    for i in range(n_packages):
        members, truth, unsafe = {}, {}, set()
        for j, (fmt, blob) in enumerate(real.items()):
            if rng.random() < 0.5:
                suffix = {
                    "safetensors": ".safetensors",
                    "pytorch": ".pt",
                    "onnx": ".onnx",
                    "tflite": ".tflite",
                }[fmt]
                name = f"assets/m{j}{suffix}"
                members[name], truth[name] = blob, (True, "plain")
        if rng.random() < 0.5:
            members["assets/enc.model"] = os.urandom(rng.randrange(20_000, 200_000))
            truth["assets/enc.model"] = (True, "encrypted")
        if rng.random() < 0.5:
            payload = zlib.compress(os.urandom(rng.randrange(20_000, 100_000)), 1)
            members["assets/packed.model"], truth["assets/packed.model"] = (
                payload,
                (True, "compressed"),
            )
        if rng.random() < 0.3:
            members["assets/evil.pkl"], truth["assets/evil.pkl"] = EVIL, (True, "plain")
            unsafe.add("assets/evil.pkl")
        for k in range(rng.randrange(2, 6)):  # assets that are not models
            members[f"res/drawable/img{k}.png"] = b"\x89PNG\r\n\x1a\n" + os.urandom(30_000)
            truth[f"res/drawable/img{k}.png"] = (False, None)
        members["classes.dex"] = b"dex\n035\x00" + os.urandom(100_000)
        truth["classes.dex"] = (False, None)
        path = tmp / f"app{i}.apk"
        path.write_bytes(_zip(members))
        packages.append((path, truth, unsafe))
    return packages


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float]:
    return tp / max(tp + fp, 1), tp / max(tp + fn, 1)


def modelscan_compare(packages) -> dict | None:
    """Run ProtectAI's modelscan (if installed: on PATH or $VEIL_MODELSCAN) on the same
    packages; it looks for unsafe serialisation only, so only that finding is compared."""
    import shutil
    import subprocess

    exe = os.environ.get("VEIL_MODELSCAN") or shutil.which("modelscan")
    if not exe:
        return None
    tp = fp = fn = 0
    start = time.perf_counter()
    for path, _, unsafe in packages:
        report = path.with_suffix(".modelscan.json")
        subprocess.run(
            [exe, "scan", "-p", str(path), "-r", "json", "-o", str(report)],
            capture_output=True,
            timeout=300,
        )
        doc = json.loads(report.read_text())
        flagged = {i["source"].split(":", 1)[-1] for i in doc.get("issues", [])}
        tp, fp, fn = (
            tp + len(flagged & unsafe),
            fp + len(flagged - unsafe),
            fn + len(unsafe - flagged),
        )
    seconds = time.perf_counter() - start
    precision, recall = _prf(tp, fp, fn)
    total = sum(p.stat().st_size for p, _, _ in packages)
    return {
        "unsafe_precision": precision,
        "unsafe_recall": recall,
        "mb_s": total / 1e6 / seconds,
        "version": subprocess.run(
            [exe, "--version"], capture_output=True, text=True
        ).stdout.strip(),
    }


def scanner_quality(quick: bool) -> dict:
    from veil.protect.scan import scan

    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        packages = corpus(10 if quick else 60, Path(tmp), rng)
        total = sum(p.stat().st_size for p, _, _ in packages)
        reports = [scan(p) for p, _, _ in packages]  # warm-up pass; its reports are scored
        seconds = statistics.median(
            common.timed(lambda: [scan(p) for p, _, _ in packages])[0] for _ in range(3)
        )
        reference = modelscan_compare(packages)
    counts = {k: [0, 0, 0] for k in ("model", "protection", "unsafe")}
    for (_, truth, unsafe), report in zip(packages, reports, strict=True):
        found = {m["path"].rsplit("!/", 1)[-1]: m for m in report.models}
        for name, (is_model, protection) in truth.items():
            hit = name in found
            if hit or is_model:  # true positive, false positive, or miss
                counts["model"][0 if hit and is_model else 1 if hit else 2] += 1
            if hit and is_model:  # a wrong label is both a false positive and a miss
                right = found[name]["protection"] == protection
                counts["protection"][0] += right
                counts["protection"][1] += not right
                counts["protection"][2] += not right
        flagged = {u["path"].rsplit("!/", 1)[-1] for u in report.unsafe}
        counts["unsafe"][0] += len(flagged & unsafe)
        counts["unsafe"][1] += len(flagged - unsafe)
        counts["unsafe"][2] += len(unsafe - flagged)
    out = {
        "packages": len(packages),
        "package_mb": total / 1e6,
        "scanner_mb_s": total / 1e6 / seconds,
        "modelscan": reference,
    }
    for key, (tp, fp, fn) in counts.items():
        out[f"{key}_precision"], out[f"{key}_recall"] = _prf(tp, fp, fn)
    return out


def watermark_run(quick: bool) -> dict:
    """Watermark a model, fine-tune a copy on 10% of the data (no triggers), test both."""
    import torch

    from veil.core import data
    from veil.core.train import evaluate, fit
    from veil.protect.watermark import trigger_set, verify, with_triggers

    name, arch, epochs = ("digits", "mlp", 25) if quick else ("mnist", "mnist-cnn", 2)
    train, test = data.load(name, "train"), data.load(name, "test")
    key = os.urandom(32)
    torch.manual_seed(0)
    net = models.build(arch, train.input_shape, 10)
    fit(
        net,
        with_triggers(train, trigger_set(key, train.input_shape, 10)),
        epochs=epochs,
        lr=0.05,
        quiet=True,
    )
    before = verify(net, key, train.input_shape, 10)
    accuracy = evaluate(net, test)["accuracy"]
    tenth = train.subset(
        torch.randperm(len(train), generator=torch.Generator().manual_seed(1))[: len(train) // 10]
    )
    fit(net, tenth, epochs=5, lr=0.05, quiet=True)
    after = verify(net, key, train.input_shape, 10)
    clean = models.build(arch, train.input_shape, 10)
    fit(clean, tenth, epochs=5, lr=0.05, quiet=True)
    return {
        "watermark_data": name,
        "watermark_model": arch,
        "watermarked_test_accuracy": accuracy,
        "watermark_hits_before": before.hits,
        "watermark_p_value_before": before.p_value,
        "watermark_hits_after_finetune": after.hits,
        "watermark_p_value_after_finetune": after.p_value,
        "finetuned_test_accuracy": evaluate(net, test)["accuracy"],
        "unmarked_model_p_value": verify(clean, key, train.input_shape, 10).p_value,
    }


def main() -> None:
    args = common.parser("protect", __doc__).parse_args()
    trials = 1000 if args.quick else 10_000
    with tempfile.TemporaryDirectory() as tmp:
        priv, pub = generate(Path(tmp) / "k", "x25519")
        key, pub_key = load(priv, "x25519", True), load(pub, "x25519", False)
        spec = models.spec_of("mnist-cnn", (1, 28, 28), 10)
        blob = save_model(Path(tmp) / "m.veil", spec.build(), spec).read_bytes()
    sealed = seal_bytes(blob, pub_key)
    assert unseal_bytes(sealed, key) == blob
    rng = random.Random(0)
    rejected = 0
    for _ in range(trials):
        tampered = bytearray(sealed)
        pos = rng.randrange(len(tampered))
        tampered[pos] ^= 1 << rng.randrange(8)
        try:
            unseal_bytes(bytes(tampered), key)
        except SealError:
            rejected += 1
    mb = len(blob) / 1e6
    seal_s = statistics.median(
        common.timed(lambda: seal_bytes(blob, pub_key))[0] for _ in range(20)
    )
    unseal_s = statistics.median(
        common.timed(lambda: unseal_bytes(sealed, key))[0] for _ in range(20)
    )
    quality = scanner_quality(args.quick)
    results = {
        **quality,
        **watermark_run(args.quick),
        "scanner_precision": quality["model_precision"],
        "scanner_recall": quality["model_recall"],
        "model_bytes": len(blob),
        "sealed_bytes": len(sealed),
        "tamper_trials": trials,
        "tamper_rejected_fraction": rejected / trials,
        "seal_mb_s": mb / seal_s,
        "unseal_mb_s": mb / unseal_s,
    }
    common.write_results("protect", results, args, "cryptography")


if __name__ == "__main__":
    main()
