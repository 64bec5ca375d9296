"""Loaders (shapes, dtypes, class counts of every real set), IDX/npz/CIFAR parsing, partitioning."""

from __future__ import annotations

import contextlib
import gzip
import io
import tarfile

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.core import data
from veil.core.errors import ConfigError, DataError

MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_mnist_matches_official_counts(shared_data):
    train, test = data.load("mnist", "train"), data.load("mnist", "test")
    assert len(train) == 60000 and len(test) == 10000
    assert train.class_counts() == MNIST_TRAIN_COUNTS
    assert train.class_counts()[1] == 6742
    assert test.class_counts() == MNIST_TEST_COUNTS
    assert train.data.dtype == torch.uint8 and train.input_shape == (1, 28, 28)
    x, y = train.batch(torch.arange(5))
    assert x.dtype == torch.float32 and x.min() >= 0.0 and x.max() <= 1.0
    assert y.dtype == torch.int64


def test_cifar10_zip(shared_data):
    test = data.load("cifar10", "test")
    assert len(test) == 10000 and test.input_shape == (3, 32, 32)
    assert test.class_counts() == [1000] * 10
    train = data.load("cifar10", "train")
    assert len(train) == 50000 and train.class_counts() == [5000] * 10
    # JPEG pixels are not constant: images carry real content
    assert float(train.data[:100].float().std()) > 30


def test_fashion_mnist():
    if data._locate_fashion(data.data_dir()) is None:
        pytest.skip("Fashion-MNIST not installed (make setup installs dataset-fashion-mnist)")
    train, test = data.load("fashion-mnist", "train"), data.load("fashion-mnist", "test")
    assert train.class_counts() == [6000] * 10 and test.class_counts() == [1000] * 10
    assert train.input_shape == (1, 28, 28) and train.classes[9] == "ankle boot"


@pytest.mark.parametrize(
    ("name", "shape", "total"), [("digits", (1, 8, 8), 1797), ("breast_cancer", (30,), 569)]
)
def test_bundled_sets_split_without_overlap(name, shape, total):
    train, test = data.load(name, "train"), data.load(name, "test")
    assert len(train) + len(test) == total
    assert train.input_shape == shape == data.info(name).input_shape
    assert len(train) == data.info(name).sizes["train"]
    rows_train = {tuple(r) for r in train.data.reshape(len(train), -1).tolist()}
    rows_test = {tuple(r) for r in test.data.reshape(len(test), -1).tolist()}
    assert len(rows_train & rows_test) <= 2  # identical inputs in different rows are allowed


def test_breast_cancer_standardised_on_train():
    train = data.load("breast_cancer", "train")
    assert torch.allclose(train.data.mean(0), torch.zeros(30), atol=1e-4)


def test_missing_set_says_what_to_put_where(empty_root):
    with pytest.raises(DataError, match="mnist.npz"):
        data.load("mnist")
    with pytest.raises(DataError, match=str(empty_root)):
        data.load("cifar10")
    st_ = {s.name: s for s in data.status()}
    assert not st_["mnist"].present and "mnist.npz" in st_["mnist"].hint
    assert st_["digits"].present


def test_unknown_set_and_split():
    with pytest.raises(DataError, match="unknown data set"):
        data.load("imagenet")
    with pytest.raises(DataError, match="unknown split"):
        data.load("digits", "validation")


def _small_mnist_arrays(n=20):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(
        np.uint8
    )


def test_npz_truncated_is_refused(empty_root):
    x, y = _small_mnist_arrays()
    buf = io.BytesIO()
    np.savez(buf, x_train=x, y_train=y, x_test=x, y_test=y)
    (empty_root / "mnist.npz").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(DataError, match="damaged"):
        data.load("mnist")


def test_npz_with_pickled_object_array_is_refused(empty_root):
    x, y = _small_mnist_arrays()
    np.savez(empty_root / "mnist.npz", x_train=np.array([object()] * 3, dtype=object), y_train=y)
    with pytest.raises(DataError):
        data.load("mnist")


def test_npz_missing_keys(empty_root):
    x, y = _small_mnist_arrays()
    np.savez(empty_root / "mnist.npz", x_train=x, y_train=y)
    assert len(data.load("mnist", "train")) == 20
    with pytest.raises(DataError, match="lacks arrays"):
        data.load("mnist", "test")


def _idx_bytes(arr: np.ndarray) -> bytes:
    codes = {
        np.dtype("u1"): 0x08,
        np.dtype("i1"): 0x09,
        np.dtype(">i2"): 0x0B,
        np.dtype(">i4"): 0x0C,
        np.dtype(">f4"): 0x0D,
        np.dtype(">f8"): 0x0E,
    }
    header = bytes([0, 0, codes[arr.dtype], arr.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in arr.shape
    )
    return header + arr.tobytes()


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_from_idx_files(empty_root, compress):
    x, y = _small_mnist_arrays(12)
    folder = empty_root / "mnist"
    folder.mkdir()
    for split in ("train", "test"):
        for base, arr in zip(data.IDX_NAMES[split], (x, y), strict=True):
            raw = _idx_bytes(arr)
            name = base + (".gz" if compress else "")
            (folder / name).write_bytes(gzip.compress(raw) if compress else raw)
    ds = data.load("mnist", "test")
    assert torch.equal(ds.data[:, 0], torch.from_numpy(x))
    assert ds.targets.tolist() == y.tolist()


_dtypes = st.sampled_from(["u1", "i1", ">i2", ">i4", ">f4", ">f8"])


@given(dtype=_dtypes, shape=st.lists(st.integers(0, 5), min_size=1, max_size=3))
def test_idx_round_trip(dtype, shape):
    arr = np.arange(int(np.prod(shape)), dtype=np.int64).astype(dtype).reshape(shape)
    out = data.parse_idx(_idx_bytes(arr))
    assert out.shape == tuple(shape) and np.array_equal(out, arr)


@given(raw=st.binary(max_size=64))
def test_idx_parser_refuses_garbage_cleanly(raw):
    with contextlib.suppress(DataError):  # any other exception fails the test
        data.parse_idx(raw)


@given(cut=st.integers(1, 40))
def test_idx_truncation_detected(cut):
    raw = _idx_bytes(np.zeros((3, 4, 4), dtype="u1"))
    with pytest.raises(DataError):
        data.parse_idx(raw[: len(raw) - cut])


def test_pickled_cifar_is_refused_with_pointer_to_binary(empty_root):
    (empty_root / "cifar-10-batches-py").mkdir()
    with pytest.raises(DataError, match="pickled.*binary version"):
        data.load("cifar10")


def _cifar_records(n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    return labels, pixels, np.concatenate([labels[:, None], pixels], 1).tobytes()


@pytest.mark.parametrize("packed", [False, True])
def test_cifar_binary_version(empty_root, packed):
    files = {f"data_batch_{i}.bin": _cifar_records(4, i) for i in range(1, 6)}
    files["test_batch.bin"] = _cifar_records(3, 9)
    if packed:
        with tarfile.open(empty_root / data.CIFAR_BIN_TAR, "w:gz") as tar:
            for name, (_, _, raw) in files.items():
                info = tarfile.TarInfo(f"{data.CIFAR_BIN_DIR}/{name}")
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
    else:
        folder = empty_root / data.CIFAR_BIN_DIR
        folder.mkdir()
        for name, (_, _, raw) in files.items():
            (folder / name).write_bytes(raw)
    test = data.load("cifar10", "test")
    labels, pixels, _ = files["test_batch.bin"]
    assert test.targets.tolist() == labels.tolist()
    assert torch.equal(test.data.reshape(3, -1), torch.from_numpy(pixels))
    assert len(data.load("cifar10", "train")) == 20


def test_cifar_binary_truncated(empty_root):
    folder = empty_root / data.CIFAR_BIN_DIR
    folder.mkdir()
    (folder / "test_batch.bin").write_bytes(_cifar_records(2, 0)[2][:-5])
    with pytest.raises(DataError, match="truncated"):
        data.load("cifar10", "test")


# --- partitioning ------------------------------------------------------------------------

_labels = st.lists(st.integers(0, 4), min_size=12, max_size=200).map(np.array)


def _assert_disjoint_complete(parts, n):
    joined = np.concatenate(parts)
    assert len(joined) == n and len(np.unique(joined)) == n


@settings(max_examples=40, deadline=None)
@given(
    labels=_labels,
    n_sites=st.integers(1, 6),
    seed=st.integers(0, 2**31),
    scheme=st.sampled_from(["iid", "dirichlet", "by_key"]),
)
def test_partition_disjoint_complete_reproducible(labels, n_sites, seed, scheme):
    keys = np.arange(len(labels)) // 2
    kw = {"keys": keys, "alpha": 1.0, "seed": seed}
    parts = data.partition(labels, n_sites, scheme, **kw)
    assert len(parts) == n_sites
    _assert_disjoint_complete(parts, len(labels))
    again = data.partition(labels, n_sites, scheme, **kw)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))


def test_by_key_keeps_groups_whole():
    keys = np.repeat(np.arange(30), 7)
    labels = np.zeros(len(keys), dtype=int)
    parts = data.partition(labels, 4, "by_key", keys=keys, seed=3)
    owners = [{int(k) for k in keys[p]} for p in parts]
    assert sum(len(o) for o in owners) == 30  # no key in two sites
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 7


def test_dirichlet_skew_grows_as_alpha_falls():
    labels = np.repeat(np.arange(10), 300)
    skew = {
        a: np.mean(
            [
                data.label_skew(labels, data.partition(labels, 8, "dirichlet", alpha=a, seed=s))
                for s in range(5)
            ]
        )
        for a in (100.0, 1.0, 0.1)
    }
    assert skew[100.0] < skew[1.0] < skew[0.1]
    assert skew[100.0] < 0.1 and skew[0.1] > 0.5
    iid = data.label_skew(labels, data.partition(labels, 8, "iid"))
    assert iid < 0.1


def test_partition_errors():
    labels = np.zeros(10, dtype=int)
    with pytest.raises(ConfigError, match="scheme"):
        data.partition(labels, 2, "random")
    with pytest.raises(ConfigError, match="key"):
        data.partition(labels, 2, "by_key")
    with pytest.raises(ConfigError, match="n_sites"):
        data.partition(labels, 11)
    with pytest.raises(ConfigError, match="distinct keys"):
        data.partition(labels, 3, "by_key", keys=np.zeros(10))


def test_parse_scheme():
    assert data.parse_scheme("dirichlet(0.3)") == ("dirichlet", {"alpha": 0.3})
    assert data.parse_scheme("iid") == ("iid", {})
    with pytest.raises(ConfigError):
        data.parse_scheme("dirichlet(x)")


def test_split_sites_carries_keys():
    ds = data.load("digits", "train")
    ds.keys = np.arange(len(ds)) % 40
    sites = data.split_sites(ds, 3, "by_key", seed=1)
    assert sum(len(s) for s in sites) == len(ds)
    key_sets = [set(s.keys.tolist()) for s in sites]
    assert not (key_sets[0] & key_sets[1]) and not (key_sets[1] & key_sets[2])
