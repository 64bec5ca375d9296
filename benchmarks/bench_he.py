"""Encrypted inference (CKKS) benchmarks: accuracy encrypted vs plaintext, time and bytes.

Three MNIST networks trained here with x² activations (Adam, 5 epochs): the MLP 784-128-10,
a CryptoNets-style CNN with one square (conv 5x5 stride 2, 5 channels, x², dense 10; depth
3: the headline) and with two (conv, x², dense 32, x², dense 10; depth 5). For each:
plaintext accuracy on the whole test set and on the encrypted images; encrypted accuracy on
one full batch (one slot per image: 4096 or 8192 random test images); the server's time per
image in that batch; single-image latency with vector packing (client encryption + server +
client decryption, keys already made); request and reply bytes per image. Batch evaluation
uses every core (forked workers; ``VEIL_HE_WORKERS`` sets how many). Beside it, in the same
run, TenSEAL's own batched ``CKKSTensor.mm`` on a slice of a first layer gives the speed
ratio of veil's evaluation (products accumulated, one rescale per output), per process and
with all cores.

Writes benchmarks/results/he.json: ms_per_image_batched, single_image_latency_s,
accuracy_plain, accuracy_encrypted, accuracy_drop_pt, bytes_per_image_batched (headline: the
one-square CNN), and the same per model.
"""

from __future__ import annotations

import time

import numpy as np
import torch

import common
from veil.core import data as data_mod
from veil.core.data import sample_indices
from veil.core.train import train_named
from veil.encrypted.he import Client, EncryptedModel, compile_model
from veil.encrypted.he.packing import batch_columns


def images(split: str, n: int | None, seed: int = 0):
    ds = data_mod.load(DATA, split)
    x, y = ds.batch(torch.as_tensor(sample_indices(len(ds), n, seed)))
    return x.numpy().reshape(len(x), -1), y.numpy()


def measure(name: str, options: dict, epochs: int, batch_images: int | None) -> dict:
    trained = train_named(
        DATA, name, model_options=options, epochs=epochs, optimizer="adam", lr=1e-3
    )
    shape = trained.spec.input_shape
    compiled = compile_model(trained.model, shape)
    x_test, y_test = images("test", None)
    plain_all = float((compiled.forward(x_test).argmax(1) == y_test).mean())
    sample, _ = images("train", 256)
    served = EncryptedModel(compiled, sample=sample)
    spec = served.spec()

    # batched: one full batch of test images (or fewer in quick mode)
    client = Client(spec, ("batch",))
    public = client.public()
    n = min(batch_images or client.params.slots, client.params.slots, len(x_test))
    x, y = images("test", n, seed=1)  # a random subset (the test files are not shuffled)
    t0 = time.perf_counter()
    request = client.encrypt(x, "batch")
    t1 = time.perf_counter()
    reply, memory = common.peak_memory(lambda: served.evaluate(public, request))
    t2 = time.perf_counter()
    logits = client.decrypt(reply)
    t3 = time.perf_counter()
    encrypted = float((logits.argmax(1) == y).mean())
    plain = float((compiled.forward(x).argmax(1) == y).mean())  # on the same images
    agree = float((logits.argmax(1) == compiled.forward(x).argmax(1)).mean())
    slots = client.params.slots

    # single image: vector packing, keys made beforehand, plaintexts cached after a warm-up
    vclient = Client(spec, ("vector",))
    vpublic = vclient.public()
    served.evaluate(vpublic, vclient.encrypt(x[:1], "vector"))  # warm the plaintext cache
    latencies = []
    for image in x[1:4]:
        start = time.perf_counter()
        out = vclient.decrypt(served.evaluate(vpublic, vclient.encrypt(image[None], "vector")))
        latencies.append(time.perf_counter() - start)
    vector_bytes = len(vclient.encrypt(x[:1], "vector"))
    return {
        "model": name,
        "options": options,
        "compiled": compiled.describe(),
        "weights": compiled.weights(),
        "ckks": spec["params"],
        "accuracy_plain_whole_test_set": plain_all,
        "accuracy_plain": plain,
        "accuracy_encrypted": encrypted,
        "accuracy_drop_pt": round(100 * (plain - encrypted), 3),
        "encrypted_images": n,
        "argmax_agreement_with_plaintext": agree,
        "max_abs_logit_error": float(np.abs(logits - compiled.forward(x)).max()),
        "batch_slots": slots,
        "server_s_per_batch": t2 - t1,
        "ms_per_image_batched": 1000 * (t2 - t1) / slots,
        "client_encrypt_s_per_batch": t1 - t0,
        "client_decrypt_s_per_batch": t3 - t2,
        "bytes_per_image_batched": (len(request) + len(reply)) / slots,
        "server_peak_memory_mb": memory / 2**20,
        "single_image_latency_s": float(np.median(latencies)),
        "single_image_request_bytes": vector_bytes,
        "vector_rotation_keys": len(spec["rotation_steps"]),
        "vector_argmax_matches": bool(out.argmax(1)[0] == logits[3].argmax()),
    }


def tenseal_ratio(slots_used: int, inputs: int = 48, outputs: int = 32) -> dict:
    """veil's batched affine stage vs TenSEAL's CKKSTensor.mm on the same slice, same keys size."""
    import tenseal as ts
    from torch import nn

    from veil.core.models import Square

    rng = np.random.default_rng(0)
    x = rng.random((slots_used, inputs))
    w = rng.normal(0, 0.1, (inputs, outputs))
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=[55, 35, 35, 35, 55])
    ctx.global_scale = 2.0**35
    enc = ts.ckks_tensor(ctx, ts.plain_tensor(x), batch=True).reshape([1, inputs])
    plain_w = ts.plain_tensor(w)

    layer = nn.Linear(inputs, outputs, bias=False)
    layer.weight.data = torch.as_tensor(w.T.copy(), dtype=torch.float32)
    model = nn.Sequential(layer, Square(), nn.Linear(outputs, 2))
    served = EncryptedModel(compile_model(model, (inputs,)))
    client = Client(served.spec(), ("batch",))
    public = client.public()
    cts = [client.context.encrypt(c) for c in batch_columns(x, client.params.slots)]
    from veil.encrypted.he.packing import affine_batch

    stage = served.model.stages[0]
    one = common.compare(
        lambda: affine_batch(public, stage, cts, workers=1), lambda: enc.mm(plain_w), rounds=3
    )
    every, _ = common.timed(lambda: affine_batch(public, stage, cts))
    return {
        "slice": [inputs, outputs],
        "tenseal_threads": ctx.n_threads if hasattr(ctx, "n_threads") else None,
        "veil_one_process_s": one["a_median_s"],
        "veil_all_cores_s": every,
        "tenseal_s": one["b_median_s"],
        "tenseal_over_veil_one_process": one["ratio_b_over_a"],
        "tenseal_over_veil_all_cores": one["b_median_s"] / every,
    }


def main() -> None:
    global DATA
    args = common.parser("he", __doc__.splitlines()[0]).parse_args()
    DATA = "digits" if args.quick else "mnist"
    epochs, mlp_options = (20, {"hidden": 32}) if args.quick else (5, {})
    mlp = measure("he-mlp", mlp_options, epochs, None)
    cnn = measure("he-cnn", {"hidden": 0}, epochs, None)  # conv, x², dense: depth 3
    cnn2 = measure("he-cnn", {}, epochs, None)  # conv, x², dense 32, x², dense: depth 5
    headline = {
        k: cnn[k]
        for k in (
            "ms_per_image_batched",
            "single_image_latency_s",
            "accuracy_plain",
            "accuracy_encrypted",
            "accuracy_drop_pt",
            "bytes_per_image_batched",
        )
    }
    results = {
        **headline,
        "data": DATA,
        "mlp": mlp,
        "cnn": cnn,
        "cnn_two_squares": cnn2,
        "vs_tenseal_ckkstensor": tenseal_ratio(64, 48, 32)
        if args.quick
        else tenseal_ratio(4096, 128, 64),
    }
    common.write_results("he", results, args, "tenseal")


DATA = "mnist"

if __name__ == "__main__":
    main()
