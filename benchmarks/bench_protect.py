"""Model protection benchmarks: sealed-file tampering and sealing throughput.

10,000 random single-bit flips of a sealed `mnist-cnn` model file, each unsealed with the
right key: every one must be rejected. Sealing and unsealing throughput in MB/s. (The
scanner's precision, recall and throughput come with the scanner.)

Writes benchmarks/results/protect.json: tamper_trials, tamper_rejected_fraction,
seal_mb_s, unseal_mb_s.
"""

from __future__ import annotations

import random
import statistics
import tempfile
from pathlib import Path

import common
from veil.core import models
from veil.core.io import save_model
from veil.protect import SealError, seal_bytes, unseal_bytes
from veil.protect.keys import generate, load


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
    results = {
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
