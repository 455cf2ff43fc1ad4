"""Data sets by name, each as in-memory tensors: ``load(name, ...) -> Dataset``.

The built-in data sets are below; the user's own (image folders, tables, ``.npz``, arrays) get a name from
:func:`labelsmooth.experiment.user_data.register`, which ``load`` takes too.

========== ============================================ ================ =========
name       source                                       size (train/test) input
========== ============================================ ================ =========
digits     scikit-learn's bundled ``load_digits``       1,347 / 450      1×8×8
mnist1d    ``mnist1d.data.make_dataset`` (offline)      4,000 / 1,000    1×40
fashion-   IDX files (Debian ``dataset-fashion-mnist``, 60,000 / 10,000  1×28×28
mnist      or the official download)
mnist      IDX files in a folder                        60,000 / 10,000  1×28×28
cifar10    the official "python version" batches        50,000 / 10,000  3×32×32
cifar100   the official "python version" batches        50,000 / 10,000  3×32×32
========== ============================================ ================ =========

Inputs are scaled to [0, 1] and then standardised per channel with the training set's mean and standard
deviation (MNIST-1D comes standardised already). ``train_size``/``test_size`` take a stratified subset
(fixed seed, the same for every run) of the standard split. Files are looked for in ``data_dir`` if one is
given, and only there (a folder the user names is used or refused, never replaced by another); otherwise
in ``$LABELSMOOTH_DATA``, the user cache folder (``$XDG_CACHE_HOME`` or ``~/.cache``, then
``labelsmooth``) and, for Fashion-MNIST, ``/usr/share/datasets/fashion-mnist``. Each location may hold the
files directly or in a sub-folder named after the data set (``fashion-mnist``, ``mnist``,
``cifar-10-batches-py``, ...). Broken files raise :class:`DataError` naming the file (bad headers, test
images of another size than the training images, labels outside [0, K)); missing ones
:class:`DataNotFoundError`, saying where it looked and how to get them.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

#: Seed of the fixed digits split and of every subset: the data never vary with the run's seed.
DATA_SEED = 0
#: Where Fashion-MNIST is downloaded from when no files are found;
#: override with $LABELSMOOTH_FASHION_MNIST_URL.
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
DOWNLOAD_TIMEOUT_S = 10.0
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
DIGIT_CLASSES = tuple(str(i) for i in range(10))


class DataError(ValueError):
    """A data file is missing, truncated or corrupt; the message names the file."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A data set's files are not where they were looked for; the message says where and how to get them."""


class Parts:
    """What a data set's parts tell of it (for :class:`Dataset` and
    :class:`labelsmooth.experiment.splits.Splits`): ``classes`` and ``x_train`` (N, *input_shape)."""

    classes: tuple[str, ...]
    x_train: Tensor

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


@dataclass(frozen=True)
class Dataset(Parts):
    """Train/test tensors of one data set: inputs float32 (N, *input_shape), labels int64 (N,)."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    classes: tuple[str, ...]
    source: str  # where the data came from (a folder, a file or a package)
    x_val: Tensor | None = None  # a given validation part (user data with val/ or x_val), else None
    y_val: Tensor | None = None


@dataclass(frozen=True)
class DatasetInfo:
    """What is known about a data set before loading it."""

    num_classes: int
    input_shape: tuple[int, ...]
    augmentable: bool  # random crops make sense (images)
    flip: bool  # horizontal flips make sense too
    crop_padding: int


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(10, (1, 8, 8), True, False, 1),
    "mnist1d": DatasetInfo(10, (1, 40), False, False, 0),
    "fashion-mnist": DatasetInfo(10, (1, 28, 28), True, True, 2),
    "mnist": DatasetInfo(10, (1, 28, 28), True, False, 2),
    "cifar10": DatasetInfo(10, (3, 32, 32), True, True, 4),
    "cifar100": DatasetInfo(100, (3, 32, 32), True, True, 4),
}


def info(name: str) -> DatasetInfo:
    """:data:`DATASETS`' entry of a built-in data set, or what a user data set's name says
    (:func:`labelsmooth.experiment.user_data.info`)."""
    if name in DATASETS:
        return DATASETS[name]
    from labelsmooth.experiment import user_data

    if user_data.is_user_name(name):
        return user_data.info(name)
    raise ValueError(
        f"Expected a data set name in {list(DATASETS)} or a user data set's name "
        f"(labelsmooth.experiment.user_data.register, labelsmooth train --data PATH), but got {name!r}"
    )


def cache_dir() -> Path:
    """The user cache folder: ``$XDG_CACHE_HOME/labelsmooth`` or ``~/.cache/labelsmooth``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "labelsmooth"


def search_dirs(data_dir: str | os.PathLike | None, *extra: str) -> list[Path]:
    """The folders looked in: ``data_dir`` alone when given (it must exist); otherwise, in order,
    ``$LABELSMOOTH_DATA``, the cache folder and ``extra``."""
    if data_dir:
        if not os.path.isdir(data_dir):
            raise DataNotFoundError(f"Expected `data_dir` to be a folder, but {os.fspath(data_dir)!r} is not one")
        return [Path(data_dir)]
    dirs = [os.environ.get("LABELSMOOTH_DATA"), cache_dir(), *extra]
    return [Path(d) for d in dirs if d]


def load(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    train_size: int | None = None,
    test_size: int | None = None,
) -> Dataset:
    """Load a data set by name (see the module docstring), optionally a stratified subset of it.

    Example:
        >>> d = load("digits")
        >>> d.x_train.shape, d.x_test.shape, d.num_classes, d.input_shape
        (torch.Size([1347, 1, 8, 8]), torch.Size([450, 1, 8, 8]), 10, (1, 8, 8))
    """
    if name not in DATASETS:
        from labelsmooth.experiment import user_data

        if user_data.is_user_name(name):
            return user_data.load(name, train_size=train_size, test_size=test_size)
        info(name)  # raises, naming the choices
    if name == "mnist1d":
        x_tr, y_tr, x_te, y_te, classes, source = _mnist1d(train_size, test_size)
    else:
        x_tr, y_tr, x_te, y_te, classes, source = _LOADERS[name](data_dir)
        if x_tr.shape[1:] != DATASETS[name].input_shape:
            raise DataError(
                f"Expected {name} images of shape {DATASETS[name].input_shape} in {source}, but got {x_tr.shape[1:]}"
            )
        x_tr, y_tr = _subset(x_tr, y_tr, train_size, "train_size", name)
        x_te, y_te = _subset(x_te, y_te, test_size, "test_size", name)
        x_tr, x_te = _standardise(x_tr, x_te)
    return Dataset(
        name,
        torch.from_numpy(np.ascontiguousarray(x_tr, dtype=np.float32)),
        torch.from_numpy(y_tr.astype(np.int64)),
        torch.from_numpy(np.ascontiguousarray(x_te, dtype=np.float32)),
        torch.from_numpy(y_te.astype(np.int64)),
        tuple(classes),
        str(source),
    )


def _standardise(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (axis 1) standardisation with the training set's statistics, in float32."""
    axes = (0, *range(2, x_train.ndim))
    mean = x_train.mean(axis=axes, keepdims=True, dtype=np.float64)
    std = x_train.std(axis=axes, keepdims=True, dtype=np.float64) + 1e-8
    return ((x_train - mean) / std).astype(np.float32), ((x_test - mean) / std).astype(np.float32)


def _subset(x: np.ndarray, y: np.ndarray, size: int | None, what: str, name: str):
    """A stratified subset of ``size`` rows (seed :data:`DATA_SEED`); all rows when ``size`` is None."""
    if size is None or size == len(y):
        return x, y
    if size > len(y):
        raise ValueError(f"Expected `{what}` <= {len(y)} (the size of {name}'s split), but got {size}")
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    stratify = y if size >= np.count_nonzero(counts) and counts[counts > 0].min() >= 2 else None
    if stratify is None:
        keep = np.random.default_rng(DATA_SEED).permutation(len(y))[:size]
    else:
        keep, _ = train_test_split(np.arange(len(y)), train_size=size, stratify=stratify, random_state=DATA_SEED)
        keep = np.sort(keep)
    return x[keep], y[keep]


# --- digits -------------------------------------------------------------------------------------------


def _digits(data_dir):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8) in [0, 1]
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, stratify=y, random_state=DATA_SEED)
    return x_tr, y_tr, x_te, y_te, DIGIT_CLASSES, "sklearn.datasets.load_digits"


# --- MNIST-1D -----------------------------------------------------------------------------------------


def _mnist1d(train_size: int | None, test_size: int | None):
    """The paper's 4,000/1,000 split from ``make_dataset``'s defaults; larger sizes come from one bigger pool.

    Sizes within 4,000/1,000 take stratified subsets of the standard split. Larger ones generate a pool of
    ``max(train + test, MNIST1D_POOL)`` examples (rounded up to a multiple of 10) with otherwise default
    arguments: the first ``train_size`` train, the last ``test_size`` test. So every size up to the pool
    shares one test set and the training sets are nested (the regime map of docs/results.md relies on it).
    Cached as .npz in the cache folder.
    """
    n_train, n_test = train_size or 4000, test_size or 1000
    if n_train <= 4000 and n_test <= 1000:
        x_tr, y_tr, x_te, y_te, path = _mnist1d_generate(5000)
        x_tr, y_tr = _subset(x_tr, y_tr, n_train, "train_size", "mnist1d")
        x_te, y_te = _subset(x_te, y_te, n_test, "test_size", "mnist1d")
    else:
        total = -(-max(n_train + n_test, MNIST1D_POOL) // 10) * 10
        x, y, _, _, path = _mnist1d_generate(total, split=False)
        x_tr, y_tr, x_te, y_te = x[:n_train], y[:n_train], x[total - n_test :], y[total - n_test :]
    return x_tr[:, None], y_tr, x_te[:, None], y_te, DIGIT_CLASSES, path


#: The size of the generated MNIST-1D pool that sizes beyond the standard split are drawn from.
MNIST1D_POOL = 20_000


def _mnist1d_generate(num_samples: int, split: bool = True):
    path = cache_dir() / (f"mnist1d-{num_samples}.npz" if split else f"mnist1d-pool-{num_samples}.npz")
    if path.is_file():
        try:
            with np.load(path) as f:
                arrays = f["x"], f["y"], f["x_test"], f["y_test"]
            return (*arrays, path)
        except (OSError, ValueError, KeyError, EOFError):
            pass  # a broken cache file: make it again
    from mnist1d.data import get_dataset_args, make_dataset  # never get_dataset: it goes to the web first

    args = get_dataset_args()
    args.num_samples = num_samples
    if not split:
        args.train_split = 1.0
    data = make_dataset(args)
    arrays = tuple(np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test"))
    arrays = (
        arrays[0].astype(np.float32),
        arrays[1].astype(np.int64),
        arrays[2].astype(np.float32),
        arrays[3].astype(np.int64),
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, x=arrays[0], y=arrays[1], x_test=arrays[2], y_test=arrays[3])
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache folder only costs regenerating next time
    return (*arrays, path)


# --- IDX (MNIST, Fashion-MNIST) -----------------------------------------------------------------------

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (plain or .gz): magic 0 0 <dtype> <ndim>, then ndim big-endian uint32 sizes, data.

    Source: the format described on Yann LeCun's MNIST page. Raises :class:`DataError` naming the file
    for a bad magic number or a size that does not match the header.

    Example:
        >>> import tempfile, os, numpy as np
        >>> p = os.path.join(tempfile.mkdtemp(), "x-idx1-ubyte")
        >>> write_idx(p, np.array([3, 1, 4], dtype=np.uint8)); read_idx(p)
        array([3, 1, 4], dtype=uint8)
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise DataError(f"Cannot read IDX file {path}: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise DataError(
            f"Expected an IDX file (magic number 0x0000<type><ndim>) in {path}, "
            f"but got {raw[:4].hex() or 'an empty file'}"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"IDX file {path} is truncated: its header needs {header} bytes, but it has {len(raw)}")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(
            f"IDX file {path} has {len(raw)} bytes, but its header (shape {shape}, {dtype}) says {expected}"
            + (" (truncated)" if len(raw) < expected else "")
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` (uint8) as an IDX file, gzip-compressed when ``path`` ends in .gz (for tests)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    blob = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes() + array.tobytes()
    with open(path, "wb") as f:
        f.write(gzip.compress(blob) if str(path).endswith(".gz") else blob)


def _find_idx(folder: Path) -> dict[str, Path] | None:
    """The four IDX files in ``folder`` (plain or .gz), or None if any is missing."""
    found = {}
    for key, stem in IDX_FILES.items():
        for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
            if (folder / name).is_file():
                found[key] = folder / name
                break
        else:
            return None
    return found


def _idx_split(files: dict[str, Path], num_classes: int):
    out = []
    for split in ("train", "test"):
        x = read_idx(files[f"{split}_images"])
        y = read_idx(files[f"{split}_labels"])
        if x.ndim != 3:
            raise DataError(
                f"Expected images of shape (N, rows, cols) in {files[f'{split}_images']}, but got {x.shape}"
            )
        if y.ndim != 1:
            raise DataError(f"Expected labels of shape (N,) in {files[f'{split}_labels']}, but got {y.shape}")
        if len(x) != len(y):
            raise DataError(
                f"{files[f'{split}_images']} holds {len(x)} images but {files[f'{split}_labels']} holds {len(y)} labels"
            )
        if y.size and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
            raise DataError(f"Expected labels in [0, {num_classes}) in {files[f'{split}_labels']}, but got {bad}")
        if split == "test" and x.shape[1:] != out[0].shape[2:]:
            raise DataError(
                f"Expected test images of the training images' size {out[0].shape[2:]} "
                f"({files['train_images']}) in {files['test_images']}, but got {x.shape[1:]}"
            )
        out += [(x.astype(np.float32) / 255.0)[:, None], y.astype(np.int64)]
    return out


def _idx_folder(name: str, data_dir, subfolders: tuple[str, ...], extra: tuple[str, ...] = ()):
    tried = []
    for base in search_dirs(data_dir, *extra):
        for folder in (base, *(base / s for s in subfolders)):
            tried.append(str(folder))
            files = _find_idx(folder)
            if files is not None:
                return files, folder, tried
    if data_dir:  # the user named this folder: say what it lacks instead of looking elsewhere
        for folder in map(Path, tried):
            partial = _partial_idx(folder)
            if partial:
                raise DataNotFoundError(
                    f"--data-dir {os.fspath(data_dir)!r}: {folder} holds {', '.join(partial[0])} but not "
                    f"{', '.join(partial[1])} (each plain or .gz) of {name}"
                )
    return None, None, tried


def _partial_idx(folder: Path) -> tuple[list[str], list[str]] | None:
    """(present, missing) IDX file names when ``folder`` holds some but not all four, else None."""
    present, missing = [], []
    for stem in IDX_FILES.values():
        names = (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz")
        (present if any((folder / n).is_file() for n in names) else missing).append(stem)
    return (present, missing) if present and missing else None


def _mnist(data_dir):
    files, folder, tried = _idx_folder("mnist", data_dir, ("mnist", "MNIST", "MNIST/raw"))
    if files is None:
        raise DataNotFoundError(
            f"No MNIST IDX files ({', '.join(IDX_FILES.values())}, optionally .gz) in any of {tried}; "
            "put them in a folder and pass --data-dir (or set $LABELSMOOTH_DATA)"
        )
    return (*_idx_split(files, 10), DIGIT_CLASSES, folder)


def _fashion_mnist(data_dir):
    subfolders = ("fashion-mnist", "fashion_mnist", "FashionMNIST/raw")
    files, folder, tried = _idx_folder("fashion-mnist", data_dir, subfolders, (DEBIAN_FASHION_MNIST,))
    if files is None and data_dir:
        raise DataNotFoundError(
            f"No Fashion-MNIST IDX files ({', '.join(IDX_FILES.values())}, optionally .gz) in --data-dir "
            f"{os.fspath(data_dir)!r} (looked in {tried}); put them there, or leave out --data-dir to use "
            "the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist)"
        )
    if files is None:
        folder = cache_dir() / "fashion-mnist"
        url = os.environ.get("LABELSMOOTH_FASHION_MNIST_URL", FASHION_MNIST_URL)
        try:
            download_fashion_mnist(folder, url)
        except OSError as exc:
            raise DataNotFoundError(
                f"No Fashion-MNIST IDX files in any of {tried}, and the download from {url} failed ({exc}). "
                "Install the Debian package dataset-fashion-mnist "
                "(apt-get install dataset-fashion-mnist), or "
                f"download the four files {', '.join(n + '.gz' for n in IDX_FILES.values())} from "
                "https://github.com/zalandoresearch/fashion-mnist into a folder and pass --data-dir"
            ) from None
        files = _find_idx(folder)
    return (*_idx_split(files, 10), FASHION_CLASSES, folder)


def download_fashion_mnist(folder: Path, url: str, timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Download the four .gz IDX files from ``url`` into ``folder`` (each file written atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem in IDX_FILES.values():
        target = folder / (stem + ".gz")
        if target.is_file():
            continue
        with urllib.request.urlopen(url.rstrip("/") + "/" + stem + ".gz", timeout=timeout) as response:
            blob = response.read()
        tmp = target.with_suffix(f".{os.getpid()}.part")
        tmp.write_bytes(blob)
        read_idx(tmp)  # refuse a broken download before it lands under its real name
        os.replace(tmp, target)


# --- CIFAR ("python version" pickles) -----------------------------------------------------------------


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays: a data file cannot run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            data = _ArrayUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
    except (
        OSError,
        EOFError,
        pickle.UnpicklingError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
    ) as exc:
        raise DataError(f"Cannot read CIFAR batch {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(data, dict):
        raise DataError(f"Expected a dict in CIFAR batch {path}, but got {type(data).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in data.items()}


def _cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    data = _unpickle(path)
    if "data" not in data or label_key not in data:
        raise DataError(f"Expected keys 'data' and {label_key!r} in CIFAR batch {path}, but got {sorted(data)}")
    x = np.asarray(data["data"])
    y = np.asarray(data[label_key], dtype=np.int64)
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
        raise DataError(f"Expected 'data' of shape (N, 3072) uint8 in {path}, but got {x.shape} {x.dtype}")
    if y.shape != (len(x),):
        raise DataError(f"{path} holds {len(x)} images but {y.size} labels")
    if y.size and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DataError(f"Expected labels in [0, {num_classes}) in {path}, but got {int(y.min())}..{int(y.max())}")
    return (x.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0), y


def _cifar(data_dir, *, hundred: bool):
    sub = "cifar-100-python" if hundred else "cifar-10-batches-py"
    train_files = ("train",) if hundred else tuple(f"data_batch_{i}" for i in range(1, 6))
    names = (*train_files, "test" if hundred else "test_batch", "meta" if hundred else "batches.meta")
    tried = []
    for base in search_dirs(data_dir):
        for folder in (base, base / sub):
            tried.append(str(folder))
            if all((folder / n).is_file() for n in names):
                break
        else:
            continue
        break
    else:
        name = "cifar100" if hundred else "cifar10"
        raise DataNotFoundError(
            f"No {name} batches ({', '.join(names)}) in any of {tried}; download the CIFAR "
            f"'python version' from https://www.cs.toronto.edu/~kriz/cifar.html, unpack it ({sub}/) "
            "and pass --data-dir"
        )
    K, label_key = (100, "fine_labels") if hundred else (10, "labels")
    parts = [_cifar_batch(folder / n, label_key, K) for n in train_files]
    x_tr, y_tr = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    x_te, y_te = _cifar_batch(folder / names[len(train_files)], label_key, K)
    meta = _unpickle(folder / names[-1])
    key = "fine_label_names" if hundred else "label_names"
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in meta.get(key, [])]
    if len(classes) != K:
        raise DataError(f"Expected {K} names under {key!r} in {folder / names[-1]}, but got {len(classes)}")
    return x_tr, y_tr, x_te, y_te, classes, folder


_LOADERS: dict[str, Callable] = {
    "digits": _digits,
    "fashion-mnist": _fashion_mnist,
    "mnist": _mnist,
    "cifar10": lambda d: _cifar(d, hundred=False),
    "cifar100": lambda d: _cifar(d, hundred=True),
}
