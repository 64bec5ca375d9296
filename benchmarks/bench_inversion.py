"""Reconstruction attacks: gradient inversion of shared updates, model inversion of models.

Gradient inversion (Geiping et al. 2020: cosine + TV; iDLG labels), the attacker knowing
the weights and seeing one participant's update, "recovered" meaning PSNR ≥ 20 dB against
the true image (batches: each reconstruction matched to its image):
- MNIST test images, an untrained ``mlp`` (784-256-10, tanh: the first rounds of a
  collaborative run, when updates are largest), batch 1: (a) the full gradient, (b) DSSGD
  uploads of the largest θu = 100% / 10% / 1% of coordinates truncated to γ = 1e-2 (the
  attacker optimises over the coordinates it sees), (c) a DP-SGD step (clip 1, Gaussian
  noise for ε = 8 and 1 at δ = 1e-5 for that one step), (d) a FedAvg update (5 local SGD
  steps at lr 0.1); (b) and (c) also at 6,000 steps ("long"). Label recovery over 64
  single-example gradients, and over batches of 4 and 8 (counts from the bias gradient).
- Full gradients of batches of 4 and 8 (labels given to the attacker), at 400 steps and
  at 6,000 ("long").
- A small CNN: ``mnist-cnn`` (tanh) on MNIST and ``cifar-cnn`` (width 8, tanh) on CIFAR-10,
  batch 1, full gradient (and DSSGD 10% on MNIST; and 3,000 steps on MNIST, "long").
Model inversion (Fredrikson et al. 2015) of an ``mlp`` 784-128-64-10 trained on 10,000
MNIST images for 2 epochs: every class, white box (500 steps) and black box (20,000
queries per class); and white box against the same network trained with DP-SGD at ε = 1
(δ = 1e-5). A class is recovered when the nearest class mean of the training images puts
the reconstruction in it.

Writes benchmarks/results/inversion.json: psnr_full_b1, psnr_dssgd_10pct_b1,
psnr_dssgd_1pct_b1, psnr_dp_eps8_b1, psnr_dp_eps1_b1, recovered_fraction_full_b1,
label_recovery_accuracy (and more).
"""

from __future__ import annotations

import time

import numpy as np
import torch

import common
from veil.audit.reconstruction import audit
from veil.audit.reconstruction import model as model_inversion
from veil.core import data, models
from veil.core.data import sample_indices
from veil.core.train import evaluate

SETTINGS = {
    "full": {"setting": "full"},
    "dssgd_100pct": {"setting": "dssgd", "theta_up": 1.0, "gamma": 1e-2},
    "dssgd_10pct": {"setting": "dssgd", "theta_up": 0.1, "gamma": 1e-2},
    "dssgd_1pct": {"setting": "dssgd", "theta_up": 0.01, "gamma": 1e-2},
    "dp_eps8": {"setting": "dp", "epsilon": 8.0},
    "dp_eps1": {"setting": "dp", "epsilon": 1.0},
    "fedavg": {"setting": "fedavg", "local_steps": 5, "lr": 0.1},
}


def _images(name: str, count: int):
    test = data.load(name, "test")
    return test.batch(torch.as_tensor(sample_indices(len(test), count, seed=0)))


def _net(name: str, shape, **options):
    torch.manual_seed(0)
    return models.build(name, shape, 10, **options)


def _run(res: dict, key: str, net, x, y, kw: dict, steps: int, batch: int = 1) -> None:
    kw = dict(kw)
    start = time.perf_counter()
    r = audit(net, x, y, kw.pop("setting"), steps, batch=batch, **kw)
    res[f"psnr_{key}"] = r["mean_psnr"]
    res[f"ssim_{key}"] = r["mean_ssim"]
    res[f"recovered_fraction_{key}"] = r["recovered"] / r["images"]
    res[f"label_recovery_{key}"] = r["label_recovery_accuracy"]
    print(f"{key}: {r['mean_psnr']:.1f} dB, {r['recovered']}/{r['images']} recovered, "
          f"{time.perf_counter() - start:.0f} s", flush=True)  # fmt: skip


def gradient_inversion(res: dict, n: int, steps: int) -> None:
    x, y = _images("mnist", 64)
    mlp = _net("mlp", (1, 28, 28), hidden=[256], activation="tanh")
    labels = audit(mlp, x, y, "full", steps=0)  # 0 steps: the label recovery alone
    res["label_recovery_accuracy"] = labels["label_recovery_accuracy"]
    res["label_recovery_images"] = len(x)
    for batch in (4, 8):
        found = audit(mlp, x, y, "full", steps=0, batch=batch)["label_recovery_accuracy"]
        res[f"label_recovery_accuracy_b{batch}"] = found
    for name, kw in SETTINGS.items():
        _run(res, f"{name}_b1", mlp, x[:n], y[:n], kw, steps)
    for name in ("dssgd_10pct", "dp_eps8"):  # the defences, against a 15x longer attack
        _run(res, f"{name}_b1_long", mlp, x[:n], y[:n], SETTINGS[name], 15 * steps)
    for batch in (4, 8):
        _run(res, f"full_b{batch}", mlp, x[:8], y[:8], SETTINGS["full"], steps, batch)
        _run(res, f"full_b{batch}_long", mlp, x[:8], y[:8], SETTINGS["full"], 15 * steps, batch)
    cnn = _net("mnist-cnn", (1, 28, 28))
    for name in ("full", "dssgd_10pct"):
        _run(res, f"cnn_{name}_b1", cnn, x[:n], y[:n], SETTINGS[name], steps)
    _run(res, "cnn_full_b1_long", cnn, x[:n], y[:n], SETTINGS["full"], 15 * steps // 2)
    cx, cy = _images("cifar10", n)
    cifar = _net("cifar-cnn", (3, 32, 32), width=8)
    _run(res, "cifar_cnn_full_b1", cifar, cx, cy, SETTINGS["full"], steps)


def _plain_model(x, y):
    net = _net("mlp", (1, 28, 28))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(2):  # shuffled: sample_indices comes sorted, and so by class
        for idx in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    return net


def _dp_model(subset, epsilon: float):
    from veil import dp

    net = _net("mlp", (1, 28, 28))
    return dp.train(net, subset, epsilon=epsilon, delta=1e-5, epochs=2, quiet=True).model


def model_inversion_run(res: dict, queries: int, steps: int) -> None:
    train = data.load("mnist", "train")
    subset = train.subset(sample_indices(len(train), 10_000, seed=0))
    x, y = subset.batch(torch.arange(len(subset)))
    test, classes, plain = data.load("mnist", "test"), list(range(10)), _plain_model(x, y)
    runs = (
        ("white", plain, {"steps": steps}),
        ("black", plain, {"black": True, "queries": queries}),
        ("white_dp_eps1", _dp_model(subset, 1.0), {"steps": steps}),
    )
    for name, net, kw in runs:
        start = time.perf_counter()
        r = model_inversion.audit(net, x, y, classes, **kw)
        res[f"model_inversion_{name}_identified"] = r["identified"]
        res[f"model_inversion_{name}_confidence"] = r["mean_confidence"]
        res[f"model_inversion_{name}_ssim_class_mean"] = r["mean_ssim_class_mean"]
        res[f"model_inversion_{name}_seconds"] = round(time.perf_counter() - start, 1)
        res[f"model_inversion_{name}_test_accuracy"] = evaluate(net, test, device="cpu")["accuracy"]
        print(f"model inversion {name}: {r['identified']}/10", flush=True)
    res["model_inversion_baseline_ssim"] = r["mean_baseline_ssim"]
    res["model_inversion_queries"] = queries


def main() -> None:
    args = common.parser("inversion", __doc__.splitlines()[0]).parse_args()
    torch.set_num_threads(2)
    n, steps, queries = (2, 100, 2000) if args.quick else (8, 400, 20_000)
    res = {"model": "mlp 784-256-10 tanh, untrained", "images": n, "steps": steps,
           "gamma": 1e-2}  # fmt: skip
    gradient_inversion(res, n, steps)
    model_inversion_run(res, queries, 5 * steps // 4)
    res = {k: float(v) if isinstance(v, np.floating) else v for k, v in res.items()}
    common.write_results("inversion", res, args, "torch")


if __name__ == "__main__":
    main()
