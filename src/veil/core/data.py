"""Data sets by name, read from real formats in a local folder, and partitioning across sites.

Nothing is ever downloaded. Bundled sets (scikit-learn's ``digits`` and ``breast_cancer``)
need no folder; the others are read from ``$VEIL_DATA``, else ``~/.cache/veil/data``, and a
missing set raises a :class:`DataError` that says which file to put where.

Every loader returns an :class:`ArrayDataset`: images as uint8 ``(N, C, H, W)`` (served as
float in [0, 1]) or features as float32 ``(N, D)``, labels as int64.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import tarfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from veil.core.errors import ConfigError, DataError

DATA_ENV = "VEIL_DATA"
SPLITS = ("train", "test")
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
FASHION_CLASSES = (
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)


def data_dir() -> Path:
    """The data folder: ``$VEIL_DATA`` if set, else ``~/.cache/veil/data``."""
    env = os.environ.get(DATA_ENV)
    return (Path(env).expanduser() if env else Path.home() / ".cache" / "veil" / "data").absolute()


class ArrayDataset(Dataset):
    """An in-memory labelled data set with fast batch access by index tensor.

    ``data`` holds uint8 images (served divided by 255) or float features; ``keys`` optionally
    groups examples (e.g. by patient) for :func:`partition` with ``scheme="by_key"``.
    """

    def __init__(
        self,
        data: torch.Tensor,
        targets: torch.Tensor,
        *,
        classes: Sequence[str],
        name: str,
        split: str,
        keys: np.ndarray | None = None,
    ):
        if len(data) != len(targets):
            raise DataError(f"{name}/{split}: {len(data)} inputs but {len(targets)} labels")
        if keys is not None and len(keys) != len(data):
            raise DataError(f"{name}/{split}: {len(keys)} keys for {len(data)} examples")
        self.data, self.targets = data, targets.long()
        self.classes, self.name, self.split, self.keys = tuple(classes), name, split, keys

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i):
        return self._as_float(self.data[i]), self.targets[i]

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (float) and labels of the examples at ``idx``, in one gather."""
        return self._as_float(self.data[idx]), self.targets[idx]

    def subset(self, idx) -> ArrayDataset:
        """A new data set of the examples at ``idx`` (copies; order kept)."""
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        keys = None if self.keys is None else self.keys[idx.numpy()]
        return ArrayDataset(
            self.data[idx],
            self.targets[idx],
            classes=self.classes,
            name=self.name,
            split=self.split,
            keys=keys,
        )

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_counts(self) -> list[int]:
        return torch.bincount(self.targets, minlength=self.num_classes).tolist()

    def _as_float(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()

    def __repr__(self) -> str:
        return f"ArrayDataset({self.name}/{self.split}, n={len(self)}, shape={self.input_shape})"


@dataclass(frozen=True)
class DatasetInfo:
    """What a data set is and how to place it; ``bundled`` sets need no data folder."""

    name: str
    description: str
    input_shape: tuple[int, ...]
    classes: tuple[str, ...]
    sizes: dict[str, int]
    source: str
    bundled: bool = False
    placement: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class DataStatus:
    """Whether a data set is present, and where it was found (or what to place where)."""

    name: str
    present: bool
    where: str
    hint: str = ""


@dataclass
class _Entry:
    info: DatasetInfo
    load: Callable[[str, Path], ArrayDataset]
    locate: Callable[[Path], str | None]


_REGISTRY: dict[str, _Entry] = {}


def register_dataset(info: DatasetInfo, locate: Callable[[Path], str | None] | None = None):
    """Register a loader ``fn(split, root) -> ArrayDataset`` under ``info.name``."""

    def wrap(fn):
        _REGISTRY[info.name] = _Entry(info, fn, locate or (lambda root: "bundled"))
        return fn

    return wrap


def names() -> list[str]:
    """Names of every registered data set."""
    return sorted(_REGISTRY)


def _entry(name: str) -> _Entry:
    if name not in _REGISTRY:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(names())}")
    return _REGISTRY[name]


def info(name: str) -> DatasetInfo:
    """What ``name`` is: shape, classes, sizes, source, and how to place it."""
    return _entry(name).info


def load(name: str, split: str = "train", root: str | Path | None = None) -> ArrayDataset:
    """Load split ``train`` or ``test`` of data set ``name`` from ``root`` (default: data_dir())."""
    entry = _entry(name)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} for {name}; use one of {', '.join(SPLITS)}")
    return entry.load(split, Path(root) if root is not None else data_dir())


def status(root: str | Path | None = None) -> list[DataStatus]:
    """For every data set: present or not, where it was found, or what to place where."""
    root = Path(root) if root is not None else data_dir()
    out = []
    for name in names():
        entry = _REGISTRY[name]
        where = entry.locate(root)
        hint = "" if where else entry.info.placement.format(root=root)
        out.append(DataStatus(name, where is not None, where or "", hint))
    return out


# --- bundled sets (scikit-learn) ---------------------------------------------------------


def _sklearn_split(x: np.ndarray, y: np.ndarray, split: str) -> tuple[np.ndarray, ...]:
    """A fixed stratified 75/25 split, so train and test never overlap across calls."""
    from sklearn.model_selection import train_test_split

    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, stratify=y, random_state=0)
    return (xtr, ytr, xtr) if split == "train" else (xte, yte, xtr)


_DIGITS = DatasetInfo(
    "digits",
    "handwritten digits, 8x8 grey (scikit-learn)",
    (1, 8, 8),
    tuple(str(i) for i in range(10)),
    {"train": 1347, "test": 450},
    "UCI optical digits, bundled in scikit-learn (BSD)",
    bundled=True,
)


@register_dataset(_DIGITS)
def _load_digits(split: str, root: Path) -> ArrayDataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y, _ = _sklearn_split(d.images.astype(np.float32) / 16.0, d.target, split)
    return ArrayDataset(
        torch.from_numpy(x).unsqueeze(1),
        torch.from_numpy(y),
        classes=_DIGITS.classes,
        name="digits",
        split=split,
    )


_BREAST = DatasetInfo(
    "breast_cancer",
    "Wisconsin diagnostic breast cancer, 30 features (scikit-learn)",
    (30,),
    ("malignant", "benign"),
    {"train": 426, "test": 143},
    "UCI WDBC, bundled in scikit-learn (BSD)",
    bundled=True,
)


@register_dataset(_BREAST)
def _load_breast_cancer(split: str, root: Path) -> ArrayDataset:
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    x, y, xtr = _sklearn_split(d.data.astype(np.float32), d.target, split)
    mean, std = xtr.mean(0), xtr.std(0) + 1e-8  # standardise with training statistics only
    return ArrayDataset(
        torch.from_numpy((x - mean) / std),
        torch.from_numpy(y),
        classes=_BREAST.classes,
        name="breast_cancer",
        split=split,
    )


# --- IDX (MNIST, Fashion-MNIST) ----------------------------------------------------------

_IDX_TYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def parse_idx(raw: bytes, what: str = "IDX data") -> np.ndarray:
    """Parse the bytes of an IDX file (LeCun's format); raise DataError on anything malformed."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{what} is not an IDX file: bad magic")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_TYPES or ndim == 0:
        raise DataError(f"{what} is not an IDX file: type 0x{code:02x}, {ndim} dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{what} is truncated: header cut short")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_TYPES[code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{what} is truncated or padded: {len(raw) - header} data bytes, expected {expected}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file, gzip-compressed or not."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"cannot read {path}: {e}; replace the file") from e
    return parse_idx(raw, str(path))


def _find_idx(folder: Path, split: str) -> tuple[Path, Path] | None:
    found = []
    for base in IDX_NAMES[split]:
        hits = [folder / (base + ext) for ext in ("", ".gz") if (folder / (base + ext)).is_file()]
        if not hits:
            return None
        found.append(hits[0])
    return found[0], found[1]


def _idx_dataset(folder: Path, split: str, name: str, classes) -> ArrayDataset:
    images_path, labels_path = _find_idx(folder, split)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(
            f"{name} IDX files in {folder} disagree: images {images.shape}, labels {labels.shape}"
        )
    return _image_dataset(images[:, None], labels, name, split, classes)


def _image_dataset(images: np.ndarray, labels: np.ndarray, name, split, classes) -> ArrayDataset:
    if images.dtype != np.uint8:
        raise DataError(f"{name}/{split}: images must be uint8, found {images.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        raise DataError(f"{name}/{split}: labels outside 0..{len(classes) - 1}")
    if not images.flags.writeable:  # np.frombuffer views are read-only; torch wants its own
        images = images.copy()
    return ArrayDataset(
        torch.from_numpy(np.ascontiguousarray(images)),
        torch.from_numpy(labels.astype(np.int64)),
        classes=classes,
        name=name,
        split=split,
    )


def _mnist_folders(root: Path) -> list[Path]:
    return [root / "mnist", root]


def _locate_mnist(root: Path) -> str | None:
    if (root / "mnist.npz").is_file():
        return str(root / "mnist.npz")
    for folder in _mnist_folders(root):
        if all(_find_idx(folder, s) for s in SPLITS):
            return str(folder)
    return None


_MNIST = DatasetInfo(
    "mnist",
    "MNIST handwritten digits, 28x28 grey",
    (1, 28, 28),
    tuple(str(i) for i in range(10)),
    {"train": 60000, "test": 10000},
    "LeCun, Cortes, Burges; CC BY-SA 3.0",
    placement="put mnist.npz (keys x_train, y_train, x_test, y_test) or the four IDX files "
    "(train-images-idx3-ubyte[.gz], ...) in {root}",
)


@register_dataset(_MNIST, _locate_mnist)
def _load_mnist(split: str, root: Path) -> ArrayDataset:
    where = _locate_mnist(root)
    if where is None:
        raise DataError(f"MNIST not found: {_MNIST.placement.format(root=root)}")
    path = Path(where)
    if path.suffix == ".npz":
        images, labels = _read_npz(path, split)
        return _image_dataset(images[:, None], labels, "mnist", split, _MNIST.classes)
    return _idx_dataset(path, split, "mnist", _MNIST.classes)


def _read_npz(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read ``x_<split>``/``y_<split>`` from an npz without ever unpickling."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = {f"x_{split}", f"y_{split}"} - set(z.files)
            if missing:
                raise DataError(f"{path} lacks arrays {sorted(missing)}; found {sorted(z.files)}")
            images, labels = z[f"x_{split}"], z[f"y_{split}"]
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path} is damaged (truncated or not an npz): {e}; replace it") from e
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{path}: x_{split} {images.shape} and y_{split} {labels.shape} disagree")
    return images, labels


def _fashion_folders(root: Path) -> list[Path]:
    return [root / "fashion-mnist", FASHION_SYSTEM_DIR]


def _locate_fashion(root: Path) -> str | None:
    for folder in _fashion_folders(root):
        if all(_find_idx(folder, s) for s in SPLITS):
            return str(folder)
    return None


_FASHION = DatasetInfo(
    "fashion-mnist",
    "Zalando Fashion-MNIST, 28x28 grey",
    (1, 28, 28),
    FASHION_CLASSES,
    {"train": 60000, "test": 10000},
    "Xiao, Rasul, Vollgraf 2017; MIT",
    placement="apt-get install dataset-fashion-mnist (IDX files in "
    f"{FASHION_SYSTEM_DIR}), or put the four IDX files in {{root}}/fashion-mnist/",
)


@register_dataset(_FASHION, _locate_fashion)
def _load_fashion(split: str, root: Path) -> ArrayDataset:
    where = _locate_fashion(root)
    if where is None:
        raise DataError(f"Fashion-MNIST not found: {_FASHION.placement.format(root=root)}")
    return _idx_dataset(Path(where), split, "fashion-mnist", FASHION_CLASSES)


# --- CIFAR-10 ----------------------------------------------------------------------------

CIFAR_ZIP = "cifar10-jpeg.zip"
CIFAR_BIN_DIR = "cifar-10-batches-bin"
CIFAR_BIN_TAR = "cifar-10-binary.tar.gz"
CIFAR_PICKLED = ("cifar-10-batches-py", "cifar-10-python.tar.gz")
_CIFAR_BIN_FILES = {
    "train": [f"data_batch_{i}.bin" for i in range(1, 6)],
    "test": ["test_batch.bin"],
}
_CIFAR_RECORD = 1 + 3 * 32 * 32


def _locate_cifar(root: Path) -> str | None:
    for candidate in (root / CIFAR_ZIP, root / CIFAR_BIN_DIR, root / CIFAR_BIN_TAR):
        if candidate.exists():
            return str(candidate)
    return None


_CIFAR = DatasetInfo(
    "cifar10",
    "CIFAR-10, 32x32 colour",
    (3, 32, 32),
    CIFAR10_CLASSES,
    {"train": 50000, "test": 10000},
    "Krizhevsky 2009; research use",
    placement=f"put {CIFAR_ZIP} (train/<class>/NNNN.jpg, test/<class>/NNNN.jpg) or the binary "
    f"version ({CIFAR_BIN_TAR}, or its folder {CIFAR_BIN_DIR}/) in {{root}}",
)


@register_dataset(_CIFAR, _locate_cifar)
def _load_cifar10(split: str, root: Path) -> ArrayDataset:
    where = _locate_cifar(root)
    if where is None:
        pickled = [p for p in CIFAR_PICKLED if (root / p).exists()]
        if pickled:
            raise DataError(
                f"{root / pickled[0]} is the pickled Python version of CIFAR-10, which veil "
                f"never reads (unpickling runs code); get the binary version ({CIFAR_BIN_TAR}) "
                f"and put it, or its folder {CIFAR_BIN_DIR}/, in {root}"
            )
        raise DataError(f"CIFAR-10 not found: {_CIFAR.placement.format(root=root)}")
    path = Path(where)
    if path.name == CIFAR_ZIP:
        images, labels = _read_cifar_zip(path, split)
    else:
        images, labels = _read_cifar_binary(path, split)
    return _image_dataset(images, labels, "cifar10", split, CIFAR10_CLASSES)


def _read_cifar_zip(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    index = {c: i for i, c in enumerate(CIFAR10_CLASSES)}
    try:
        with zipfile.ZipFile(path) as z:
            members = sorted(
                n for n in z.namelist() if n.startswith(f"{split}/") and n.endswith(".jpg")
            )
            if not members:
                raise DataError(f"{path} has no {split}/<class>/*.jpg images")
            images = np.empty((len(members), 3, 32, 32), dtype=np.uint8)
            labels = np.empty(len(members), dtype=np.int64)
            for i, member in enumerate(members):
                cls = member.split("/")[1]
                if cls not in index:
                    raise DataError(f"{path}: unknown class folder {cls!r} in {member}")
                with Image.open(io.BytesIO(z.read(member))) as im:
                    pixels = np.asarray(im.convert("RGB"))
                if pixels.shape != (32, 32, 3):
                    raise DataError(f"{path}: {member} is {pixels.shape}, expected 32x32 RGB")
                images[i], labels[i] = pixels.transpose(2, 0, 1), index[cls]
    except (OSError, EOFError, zipfile.BadZipFile, UnidentifiedImageError) as e:
        raise DataError(f"{path} is damaged: {e}; replace it") from e
    return images, labels


def _read_cifar_binary(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    chunks = []
    try:
        if path.is_dir():
            for fname in _CIFAR_BIN_FILES[split]:
                if not (path / fname).is_file():
                    raise DataError(f"{path} lacks {fname}; extract {CIFAR_BIN_TAR} again")
                chunks.append((path / fname).read_bytes())
        else:
            with tarfile.open(path, "r:gz") as tar:
                for fname in _CIFAR_BIN_FILES[split]:
                    member = tar.extractfile(f"{CIFAR_BIN_DIR}/{fname}")
                    if member is None:
                        raise DataError(f"{path} lacks {CIFAR_BIN_DIR}/{fname}")
                    chunks.append(member.read())
    except KeyError as e:
        raise DataError(f"{path} lacks {e}; it is not the CIFAR-10 binary version") from e
    except (OSError, EOFError, tarfile.TarError) as e:
        raise DataError(f"cannot read {path}: {e}; replace it") from e
    raw = b"".join(chunks)
    if len(raw) % _CIFAR_RECORD:
        raise DataError(f"{path}: {split} batches are truncated ({len(raw)} bytes)")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
    return records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0].astype(np.int64)


# --- partitioning across sites -----------------------------------------------------------

PARTITION_SCHEMES = ("iid", "dirichlet", "by_key")


def partition(
    labels,
    n_sites: int,
    scheme: str = "iid",
    *,
    alpha: float = 0.5,
    keys=None,
    seed: int = 0,
    min_size: int = 1,
) -> list[np.ndarray]:
    """Split example indices across ``n_sites``: disjoint, complete, reproducible from ``seed``.

    ``iid``: a random equal split. ``dirichlet``: label skew, each class spread over sites by
    Dirichlet(alpha) proportions (smaller alpha, stronger skew). ``by_key``: whole groups
    (e.g. patients, given as ``keys``) go to one site, balancing site sizes.
    """
    labels = np.asarray(labels)
    if n_sites < 1 or n_sites > len(labels):
        raise ConfigError(f"n_sites must be between 1 and {len(labels)}, got {n_sites}")
    rng = np.random.default_rng(seed)
    if scheme == "iid":
        parts = np.array_split(rng.permutation(len(labels)), n_sites)
    elif scheme == "dirichlet":
        parts = _dirichlet(labels, n_sites, alpha, rng, min_size)
    elif scheme == "by_key":
        parts = _by_key(np.asarray(keys) if keys is not None else None, len(labels), n_sites, rng)
    else:
        raise ConfigError(
            f"unknown partition scheme {scheme!r}; use {', '.join(PARTITION_SCHEMES)}"
        )
    return [np.sort(p).astype(np.int64) for p in parts]


def _dirichlet(labels, n_sites, alpha, rng, min_size, tries: int = 100) -> list[np.ndarray]:
    if alpha <= 0:
        raise ConfigError(f"dirichlet alpha must be > 0, got {alpha}")
    for _ in range(tries):
        parts = [[] for _ in range(n_sites)]
        for c in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == c))
            cuts = (np.cumsum(rng.dirichlet(np.full(n_sites, alpha)))[:-1] * len(idx)).astype(int)
            for site, chunk in enumerate(np.split(idx, cuts)):
                parts[site].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            return [np.array(p, dtype=np.int64) for p in parts]
    raise ConfigError(
        f"dirichlet(alpha={alpha}) left a site with fewer than {min_size} examples in {tries} "
        "tries; raise alpha or use fewer sites"
    )


def _by_key(keys, n, n_sites, rng) -> list[np.ndarray]:
    if keys is None or len(keys) != n:
        raise ConfigError("by_key partitioning needs one key per example (e.g. a patient id)")
    uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    if len(uniq) < n_sites:
        raise ConfigError(f"by_key: {len(uniq)} distinct keys cannot fill {n_sites} sites")
    order = rng.permutation(len(uniq))
    order = order[np.argsort(-counts[order], kind="stable")]  # largest groups first, ties random
    sizes, owner = np.zeros(n_sites, dtype=np.int64), np.empty(len(uniq), dtype=np.int64)
    for k in order:
        site = int(np.argmin(sizes))
        owner[k], sizes[site] = site, sizes[site] + counts[k]
    return [np.flatnonzero(owner[inverse] == s) for s in range(n_sites)]


def sample_indices(n: int, k: int | None, seed: int = 0) -> np.ndarray:
    """A seeded random ``k`` of ``range(n)`` (all when ``k`` is None), sorted: the one way
    veil picks a subset, so that training (``limit``) and audits pick the same examples."""
    if k is None or k >= n:
        return np.arange(n)
    if k < 1:
        raise ConfigError(f"a subset needs at least 1 example, got {k}")
    return np.sort(np.random.default_rng(seed).permutation(n)[:k])


def sample_arrays(
    name: str, split: str, limit: int | None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``limit`` seeded random examples of a data set split as float arrays (inputs, labels)."""
    dataset = load(name, split)
    x, y = dataset.batch(torch.as_tensor(sample_indices(len(dataset), limit, seed)))
    return x.numpy(), y.numpy()


def label_skew(labels, parts: Sequence[np.ndarray]) -> float:
    """Mean total-variation distance between each site's label distribution and the whole's."""
    labels = np.asarray(labels)
    k = int(labels.max()) + 1
    whole = np.bincount(labels, minlength=k) / len(labels)
    dists = [np.bincount(labels[p], minlength=k) / max(len(p), 1) for p in parts]
    return float(np.mean([0.5 * np.abs(d - whole).sum() for d in dists]))


def split_sites(
    dataset: ArrayDataset, n_sites: int, scheme: str = "iid", **kw
) -> list[ArrayDataset]:
    """Partition a data set into ``n_sites`` site data sets (see :func:`partition`)."""
    parts = partition(dataset.targets.numpy(), n_sites, scheme, keys=dataset.keys, **kw)
    return [dataset.subset(p) for p in parts]


def parse_scheme(text: str) -> tuple[str, dict]:
    """Parse ``iid``, ``by_key`` or ``dirichlet(0.3)`` into a scheme name and its keywords."""
    text = text.strip()
    if text.startswith("dirichlet(") and text.endswith(")"):
        try:
            return "dirichlet", {"alpha": float(text[len("dirichlet(") : -1])}
        except ValueError as e:
            raise ConfigError(f"bad alpha in {text!r}: write e.g. dirichlet(0.3)") from e
    if text in PARTITION_SCHEMES:
        return text, {}
    raise ConfigError(f"unknown partition {text!r}; use iid, by_key or dirichlet(ALPHA)")
