"""The user's own data sets: an image folder, a CSV or Parquet table, a ``.npz`` file, or arrays in Python.

``register(source, ...) -> str`` reads the data once, checks it, and returns the data set's *name*: the
string a :class:`~labelsmooth.experiment.config.RunConfig` takes as ``dataset`` and hashes into its key.
``labelsmooth.experiment.data.load(name)`` (and so every run, in any process on the machine) reads it back.
A name holds the kind, the absolute path, the options, the number of classes, the input shape and a
content hash (16 hex digits of SHA-256)::

    csv:/home/me/wine.csv?k=3&label=target&shape=13&std=1&test=0.2#5d3c8e2f0b9a7c41

so two different folders never share a run key, the same files under the same options always do (resuming
works), and a file changed after it was named is refused (:class:`DataError`) instead of being mixed with
runs of its old content.

============ =====================================================================================
source       how it is read
============ =====================================================================================
folder       one sub-folder per class (``root/<class>/<image>``), or ``root/train/<class>/...``
             with ``test/`` and optionally ``val/`` beside it. Read with Pillow; every file whose
             extension Pillow knows is an image (others are skipped). ``image_size=(H, W)`` resizes
             (bilinear); without it, all images must have one size. ``image_mode`` ``"rgb"``,
             ``"grayscale"`` or ``"auto"`` (grayscale when every image is). Pixels / 255.
``.csv``,    a table with a label column (``label_column``); every other column is a feature. Non-
``.parquet`` numeric feature columns are refused, naming them, unless ``categorical="onehot"``
             (one 0/1 column per value, values sorted). Missing or infinite values are refused,
             naming the column and rows. Needs pandas (and pyarrow for Parquet).
``.npz``     arrays ``x_train``, ``y_train`` and optionally ``x_test``/``y_test``, ``x_val``/``y_val``,
             ``classes`` (names in label order). Labels are class indices or any sortable values.
Python       ``(x, y)`` tensors or NumPy arrays, a dict of the ``.npz`` names, or a map-style
             ``torch.utils.data.Dataset`` yielding ``(x, y)``; ``test=`` and ``val=`` take the same.
             Written once to ``<cache>/user/<hash>.npz`` and named as that ``.npz``.
============ =====================================================================================

Class names are the sorted sub-folder names or label values. Where no test part is given, a stratified
``test_fraction`` (default 0.2) is carved out of the training part with the fixed seed
:data:`labelsmooth.experiment.data.DATA_SEED`; each class needs at least 2 examples for that. Inputs are
standardised (per channel for images, per column for tables) with the training part's mean and standard
deviation unless ``standardise=False``. A data set whose float32 arrays would exceed
:func:`memory_limit` (1/8 of the available memory, or ``$LABELSMOOTH_MAX_DATA_BYTES``) is refused before
it is read, with the sizes in the message.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from labelsmooth.experiment.config import USER_DEFAULT_EPOCHS
from labelsmooth.experiment.data import DATA_SEED, DataError, Dataset, DatasetInfo, _subset, cache_dir

KINDS = ("images", "csv", "parquet", "npz")
TABLE_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet"}
SPLIT_FOLDERS = {"train": ("train",), "test": ("test",), "val": ("val", "valid", "validation")}
DEFAULT_TEST_FRACTION = 0.2
#: ``labelsmooth train --data`` trains this many epochs when --epochs is not given.
DEFAULT_EPOCHS = USER_DEFAULT_EPOCHS  # the one definition is in config.py
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
_NAME = re.compile(r"^(images|csv|parquet|npz):(.+)\?(.*)#([0-9a-f]{16})$")


class MissingExtra(DataError, ImportError):
    """An optional package this kind of data needs is not installed; the message says which extra."""


def is_user_name(name: object) -> bool:
    """Whether ``name`` is a user data set's name (as :func:`register` returns), not a built-in one.

    Example:
        >>> is_user_name("digits"), is_user_name("csv:/data/wine.csv?k=3&label=y&shape=13&std=1&test=0.2#0123456789abcdef")
        (False, True)
    """
    return isinstance(name, str) and _NAME.match(name) is not None


@dataclass(frozen=True)
class _Parsed:
    kind: str
    path: Path
    options: dict[str, str]
    digest: str


def _parse(name: str) -> _Parsed:
    m = _NAME.match(name) if isinstance(name, str) else None
    if m is None:
        raise ValueError(
            f"Expected a user data set name (kind:path?options#hash, from user_data.register), but got {name!r}"
        )
    kind, path, query, digest = m.groups()
    options = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    return _Parsed(kind, Path(urllib.parse.unquote(path)), options, digest)


def info(name: str) -> DatasetInfo:
    """What the name itself says about a user data set (no file is read).

    Images may be augmented with random crops (padding: 1/8 of the smaller side); flips are never
    assumed to keep the class (text, digits, medical images).

    Example:
        >>> i = info("images:/data/pets?k=2&mode=rgb&shape=3x32x32&size=32x32&std=1&test=0.2#0123456789abcdef")
        >>> i.num_classes, i.input_shape, i.augmentable, i.flip, i.crop_padding
        (2, (3, 32, 32), True, False, 4)
    """
    p = _parse(name)
    shape = tuple(int(s) for s in p.options["shape"].split("x"))
    images = p.kind == "images" or len(shape) == 3
    return DatasetInfo(int(p.options["k"]), shape, images, False, max(1, min(shape[-2:]) // 8) if images else 0)


def short_name(name: str) -> str:
    """The file or folder name of a user data set, for tables and progress bars."""
    p = _parse(name)
    return p.path.name


# --- registering and loading ----------------------------------------------------------------------------


def register(
    source,
    *,
    test=None,
    val=None,
    label_column: str | None = None,
    image_size: tuple[int, int] | str | None = None,
    image_mode: str = "auto",
    categorical: str = "error",
    standardise: bool = True,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    classes: Sequence[str] | None = None,
) -> str:
    """Read and check a user data set; return its name for ``RunConfig(dataset=...)``.

    Args:
        source: a path (an image folder, ``.csv``/``.tsv``, ``.parquet``/``.pq``, ``.npz``), ``(x, y)``
            tensors or arrays, a dict with the ``.npz`` keys, or a map-style ``torch.utils.data.Dataset``
            of ``(x, y)`` pairs.
        test, val: Python sources only: the test and validation parts, in the same forms as ``source``.
        label_column: tables: the column holding the class (required for tables, refused otherwise).
        image_size: images: ``(H, W)`` or ``"HxW"`` to resize every image to; None keeps the size.
        image_mode: images: ``"rgb"``, ``"grayscale"`` or ``"auto"``.
        categorical: tables: ``"error"`` (refuse non-numeric feature columns) or ``"onehot"``.
        standardise: standardise inputs with the training part's statistics.
        test_fraction: the stratified share carved out as the test part where none is given, in (0, 1).
        classes: Python sources only: class names in label order (default: the sorted label values).

    Raises:
        DataError: unreadable or inconsistent data, naming the file, column or array.
        ValueError/TypeError: a bad argument, naming it.

    Example:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(40, 5)); y = np.arange(40) % 2
        >>> name = register((x, y)); name.split("?")[1].split("#")[0]
        'k=2&shape=5&std=1&test=0.2'
        >>> d = load(name); d.x_train.shape, d.x_test.shape, d.classes
        (torch.Size([32, 5]), torch.Size([8, 5]), ('0', '1'))
    """
    opts = _options(label_column, image_size, image_mode, categorical, standardise, test_fraction)
    if isinstance(source, (str, os.PathLike)):
        if test is not None or val is not None or classes is not None:
            raise ValueError(
                "Expected `test`, `val` and `classes` only with Python data (a file names its own parts), "
                f"but got them with the path {os.fspath(source)!r}"
            )
        path = Path(source).expanduser().resolve()
        kind = _kind_of(path)
    else:
        kind, path = "npz", _write_arrays(source, test, val, classes)
    _check_options(kind, path, opts)
    raw = _read(kind, path, opts)
    dataset = _finish(kind, path, opts, raw)
    query = dict(_kind_options(kind, opts))
    query["k"] = str(dataset.num_classes)
    query["shape"] = "x".join(str(s) for s in dataset.input_shape)
    name = f"{kind}:{urllib.parse.quote(str(path))}?{urllib.parse.urlencode(sorted(query.items()))}#{raw.digest}"
    _remember(name, dataclasses.replace(dataset, name=name))
    return name


def load(source, *, train_size: int | None = None, test_size: int | None = None, **options) -> Dataset:
    """The :class:`~labelsmooth.experiment.data.Dataset` of a user data set: a name or anything :func:`register` takes.

    ``train_size``/``test_size`` take stratified subsets (fixed seed) as for the built-in data sets.
    """
    if is_user_name(source) and options:
        raise ValueError(f"Expected no options with a registered name (they are part of it), but got {sorted(options)}")
    name = source if is_user_name(source) else register(source, **options)
    full = _load_full(name)
    x_tr, y_tr = _subset(full.x_train.numpy(), full.y_train.numpy(), train_size, "train_size", short_name(name))
    x_te, y_te = _subset(full.x_test.numpy(), full.y_test.numpy(), test_size, "test_size", short_name(name))
    if train_size is None and test_size is None:
        return full
    return dataclasses.replace(
        full,
        x_train=torch.from_numpy(np.ascontiguousarray(x_tr)),
        y_train=torch.from_numpy(np.ascontiguousarray(y_tr)),
        x_test=torch.from_numpy(np.ascontiguousarray(x_te)),
        y_test=torch.from_numpy(np.ascontiguousarray(y_te)),
    )


#: The keys of one ``data`` entry of a sweep config (TOML): the path and :func:`register`'s options.
CONFIG_KEYS = ("path", "label_column", "image_size", "image_mode", "categorical", "standardise", "test_fraction")


def register_config(entries, *, base: os.PathLike | str, where: str) -> list[str]:
    """The names of the user data sets a sweep config's ``data`` key names, as :func:`register` gives them.

    ``entries`` is a path, or a list of paths and tables with the keys :data:`CONFIG_KEYS` (``path``
    required; the others are :func:`register`'s options, ``image_size`` as ``"HxW"`` or ``[H, W]``). A
    relative path is taken relative to ``base`` (the config file's folder). The same path and options give
    the same name as ``--data PATH`` with the same options, so runs are shared and resumed across both.

    Raises:
        ValueError (:class:`~labelsmooth.experiment.grid.SpecError`): a malformed entry, naming
            ``data[i]``, the key and the value, and ``where`` (the file).
        DataError and its kin: the data set does not load; the message starts with ``data[i]`` and ``where``.

    Example:
        >>> import numpy as np, tempfile, os
        >>> folder = tempfile.mkdtemp(); np.savez(os.path.join(folder, "a.npz"), x_train=np.eye(10),
        ...                                       y_train=np.arange(10) % 2)
        >>> [n.split("?")[0].rsplit("/", 1)[1] for n in register_config(["a.npz"], base=folder, where="t.toml")]
        ['a.npz']
    """
    from labelsmooth.experiment.grid import SpecError

    items = [entries] if isinstance(entries, (str, dict)) else entries
    if not isinstance(items, list) or not items:
        raise SpecError(
            f"Expected `data` in {where} to be a path, a table with `path`, or a non-empty list of them "
            f'(e.g. [[sweep.data]] path = "wine.csv" label_column = "target"), but got {entries!r}'
        )
    names = []
    for i, item in enumerate(items):
        at = f"`data[{i}]`" if len(items) > 1 or isinstance(entries, list) else "`data`"
        options = {"path": item} if isinstance(item, str) else item
        if not isinstance(options, dict):
            raise SpecError(f"Expected {at} in {where} to be a path or a table, but got {item!r}")
        unknown = sorted(set(options) - set(CONFIG_KEYS))
        if unknown:
            raise SpecError(
                f"Expected the keys of {at} in {where} among {list(CONFIG_KEYS)}, but got unknown {unknown}"
            )
        path = options.get("path")
        if not isinstance(path, str) or not path:
            raise SpecError(f"Expected {at}.path in {where} to be a file or folder path, but got {path!r}")
        full = Path(path).expanduser()
        full = full if full.is_absolute() else Path(base) / full
        kwargs = {k: (tuple(v) if k == "image_size" and isinstance(v, list) else v) for k, v in options.items()}
        del kwargs["path"]
        try:
            names.append(register(full, **kwargs))
        except TypeError as exc:
            raise SpecError(f"{at} ({path}) in {where}: {exc}") from None
        except ValueError as exc:  # DataError, MissingExtra and option errors, naming the option
            raise _with_prefix(exc, f"{at} ({path}) in {where}: ") from None
    return names


def _with_prefix(exc: Exception, prefix: str) -> Exception:
    try:
        return type(exc)(prefix + str(exc))
    except TypeError:  # an exception type with another constructor
        return DataError(prefix + str(exc))


_FULL: dict[str, Dataset] = {}  # name -> the full data set, for the names registered or loaded here


def _load_full(name: str) -> Dataset:
    if name in _FULL:
        return _FULL[name]
    p = _parse(name)
    opts = _options(
        p.options.get("label"),
        p.options.get("size") if p.options.get("size") not in (None, "none") else None,
        p.options.get("mode", "auto"),
        p.options.get("categorical", "error"),
        p.options.get("std", "1") == "1",
        float(p.options.get("test", DEFAULT_TEST_FRACTION)),
    )
    if not p.path.exists():
        raise DataError(f"No data at {p.path} (data set {short_name(name)!r}); it was there when it was registered")
    raw = _read(p.kind, p.path, opts)
    if raw.digest != p.digest:
        raise DataError(
            f"{p.path} changed since it was registered (content hash {p.digest}, now {raw.digest}): its runs "
            "belong to the old content. Register it again for a new name (and new runs)"
        )
    return _remember(name, dataclasses.replace(_finish(p.kind, p.path, opts, raw), name=name))


def _remember(name: str, dataset: Dataset) -> Dataset:
    """Keep the few most recent full data sets in memory (a sweep loads one data set many times)."""
    _FULL.pop(name, None)
    while len(_FULL) >= 4:
        _FULL.pop(next(iter(_FULL)))
    _FULL[name] = dataset
    return dataset


def describe(dataset: Dataset) -> dict:
    """Class names, counts per part and imbalance (largest / smallest training class) of any data set.

    Example:
        >>> import numpy as np
        >>> d = load((np.zeros((6, 2)), np.array([0, 0, 0, 0, 1, 1])), test_fraction=0.5)
        >>> describe(d)["counts"], describe(d)["imbalance"]
        ({'train': [2, 1], 'test': [2, 1]}, 2.0)
    """
    K = dataset.num_classes
    counts = {"train": np.bincount(dataset.y_train.numpy(), minlength=K).tolist()}
    counts["test"] = np.bincount(dataset.y_test.numpy(), minlength=K).tolist()
    if getattr(dataset, "y_val", None) is not None:
        counts["val"] = np.bincount(dataset.y_val.numpy(), minlength=K).tolist()
    train = counts["train"]
    smallest = min(train)
    return {
        "classes": list(dataset.classes),
        "counts": counts,
        "imbalance": max(train) / smallest if smallest else math.inf,
    }


def describe_line(dataset: Dataset, limit: int = 10) -> str:
    """:func:`describe` in one line: ``classes: 3 (a 40, b 30, c 20 in training; imbalance 2.00)``."""
    d = describe(dataset)
    pairs = [f"{c} {n}" for c, n in zip(d["classes"], d["counts"]["train"])]
    shown = ", ".join(pairs[:limit]) + (f", ... ({len(pairs) - limit} more)" if len(pairs) > limit else "")
    return f"classes: {len(pairs)} ({shown} in training; imbalance {d['imbalance']:.2f})"


#: Loading a data set holds up to this many times its float32 inputs at the peak (the inputs as read, their
#: standardisation in float64, the full data set and its train/validation/test parts): measured 6.5x on a
#: 95 MiB .npz (docs/own-data.md, "Memory"), rounded up.
PEAK_FACTOR = 8


def memory_limit() -> int:
    """The most bytes of float32 inputs a data set may take: ``$LABELSMOOTH_MAX_DATA_BYTES``, else the
    available memory (``MemAvailable`` in /proc/meminfo; 16 GiB where that cannot be read) divided by
    :data:`PEAK_FACTOR`."""
    return _memory_limit()[0]


def _memory_limit() -> tuple[int, str]:
    env = os.environ.get("LABELSMOOTH_MAX_DATA_BYTES")
    if env:
        try:
            value = int(env)
        except ValueError:
            value = 0
        if value <= 0:
            raise ValueError(f"Expected $LABELSMOOTH_MAX_DATA_BYTES to be a positive integer, but got {env!r}")
        return value, "$LABELSMOOTH_MAX_DATA_BYTES"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return (
                        int(line.split()[1]) * 1024 // PEAK_FACTOR,
                        f"1/{PEAK_FACTOR} of the available memory",
                    )
    except (OSError, ValueError, IndexError):
        pass
    return (16 << 30) // PEAK_FACTOR, f"1/{PEAK_FACTOR} of 16 GiB: the available memory is unknown"


def _bytes(n: float) -> str:
    """``n`` bytes in words: "512 bytes", "3.4 KiB", "37.5 GiB"."""
    if n < 1024:
        return f"{int(n)} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
    raise AssertionError  # unreachable


def _check_memory(what: str, need: int, detail: str) -> None:
    """Refuse a data set needing ``need`` bytes (``detail`` says how that was reckoned) above :func:`memory_limit`."""
    limit, why = _memory_limit()
    if need > limit:
        raise DataError(
            f"{what} needs {_bytes(need)} in memory ({detail}), more than the limit of {_bytes(limit)} ({why}). "
            f"Data sets are held in memory, not read lazily, and loading one takes up to {PEAK_FACTOR} times its "
            "inputs at the peak: resize the images (--image-size, image_size=) or use a part of the data; raise "
            "$LABELSMOOTH_MAX_DATA_BYTES (bytes of float32 inputs) if the memory is there"
        )


def _float_bytes(n: int, shape: tuple[int, ...]) -> tuple[int, str]:
    return 4 * n * math.prod(shape), f"{n:,} examples of shape {'x'.join(map(str, shape))} as float32"


# --- options ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Options:
    label_column: str | None
    image_size: tuple[int, int] | None
    image_mode: str
    categorical: str
    standardise: bool
    test_fraction: float


def _options(label_column, image_size, image_mode, categorical, standardise, test_fraction) -> _Options:
    if label_column is not None and (not isinstance(label_column, str) or not label_column):
        raise ValueError(f"Expected `label_column` to be a column name, but got {label_column!r}")
    if isinstance(image_size, str):
        m = re.fullmatch(r"\s*(\d+)\s*[xX×,]\s*(\d+)\s*", image_size)
        if m is None:
            raise ValueError(f"Expected `image_size` as HxW (e.g. 32x32), but got {image_size!r}")
        image_size = (int(m.group(1)), int(m.group(2)))
    if image_size is not None:
        if (
            not isinstance(image_size, (tuple, list))
            or len(image_size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in image_size)
        ):
            raise ValueError(f"Expected `image_size` to be (H, W) with positive integers, but got {image_size!r}")
        image_size = (int(image_size[0]), int(image_size[1]))
    if image_mode not in ("auto", "rgb", "grayscale"):
        raise ValueError(f"Expected `image_mode` to be 'auto', 'rgb' or 'grayscale', but got {image_mode!r}")
    if categorical not in ("error", "onehot"):
        raise ValueError(f"Expected `categorical` to be 'error' or 'onehot', but got {categorical!r}")
    if not isinstance(standardise, bool):
        raise TypeError(f"Expected `standardise` to be a bool, but got {type(standardise).__name__}")
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, (int, float))
        or not 0.0 < float(test_fraction) < 1.0
    ):
        raise ValueError(f"Expected `test_fraction` in (0, 1), but got {test_fraction!r}")
    return _Options(label_column, image_size, image_mode, categorical, standardise, float(test_fraction))


def _kind_options(kind: str, o: _Options) -> list[tuple[str, str]]:
    out = [("std", "1" if o.standardise else "0"), ("test", f"{o.test_fraction:g}")]
    if kind == "images":
        out += [("size", "x".join(map(str, o.image_size)) if o.image_size else "none"), ("mode", o.image_mode)]
    elif kind in ("csv", "parquet"):
        out += [("label", o.label_column), ("categorical", o.categorical)]
        if o.categorical == "error":
            out.pop()
    return out


def _check_options(kind: str, path: Path, o: _Options) -> None:
    table = kind in ("csv", "parquet")
    if table and o.label_column is None:
        raise ValueError(f"Expected `label_column` naming the class column of the table {path}, but got none")
    if not table and o.label_column is not None:
        raise ValueError(f"Expected `label_column` only for tables (CSV, Parquet), but got it for {kind} data {path}")
    if kind != "images" and (o.image_size is not None or o.image_mode != "auto"):
        raise ValueError(f"Expected `image_size`/`image_mode` only for image folders, but got them for {path}")
    if not table and o.categorical != "error":
        raise ValueError(f"Expected `categorical` only for tables, but got {o.categorical!r} for {path}")


def _kind_of(path: Path) -> str:
    if path.is_dir():
        return "images"
    if not path.exists():
        raise DataError(f"No file or folder at {path}")
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return TABLE_SUFFIXES[suffix]
    if suffix == ".npz":
        return "npz"
    raise ValueError(
        f"Expected an image folder, a .csv/.tsv, .parquet/.pq or .npz file, but got {path} (suffix {suffix!r})"
    )


# --- reading ----------------------------------------------------------------------------------------


@dataclass
class _Raw:
    """The parts as read: inputs as float32 arrays, labels as class indices; ``digest`` of the content."""

    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    classes: tuple[str, ...]
    digest: str


def _read(kind: str, path: Path, opts: _Options) -> _Raw:
    if kind == "images":
        return _read_images(path, opts)
    if kind in ("csv", "parquet"):
        return _read_table(path, kind, opts)
    return _read_npz(path)


def _finish(kind: str, path: Path, opts: _Options, raw: _Raw) -> Dataset:
    """Check the parts, carve a test part where none is given, standardise: the full Dataset."""
    K = len(raw.classes)
    if K < 2:
        raise DataError(
            f"{path} holds {K} class{'es' if K != 1 else ''} ({', '.join(map(repr, raw.classes)) or 'none'}): "
            "a classifier needs at least 2"
        )
    x, y = dict(raw.x), dict(raw.y)
    missing = sorted(set(range(K)) - set(np.unique(y["train"]).tolist()))
    if missing:
        raise DataError(
            f"{path}: class {raw.classes[missing[0]]!r} has no training examples (it appears only in "
            f"{'/'.join(s for s in ('test', 'val') if s in y and missing[0] in y[s])}); every class needs some"
        )
    if "test" not in x:
        x["train"], y["train"], x["test"], y["test"] = _carve(x["train"], y["train"], opts.test_fraction, raw, path)
    if opts.standardise:
        axes = (0, *range(2, x["train"].ndim))
        mean = x["train"].mean(axis=axes, keepdims=True, dtype=np.float64)
        std = x["train"].std(axis=axes, keepdims=True, dtype=np.float64) + 1e-8
        x = {s: ((v - mean) / std).astype(np.float32) for s, v in x.items()}

    def t(a, dtype):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=dtype))

    return Dataset(
        name=str(path),
        x_train=t(x["train"], np.float32),
        y_train=t(y["train"], np.int64),
        x_test=t(x["test"], np.float32),
        y_test=t(y["test"], np.int64),
        classes=raw.classes,
        source=str(path),
        x_val=t(x["val"], np.float32) if "val" in x else None,
        y_val=t(y["val"], np.int64) if "val" in y else None,
    )


def _carve(x: np.ndarray, y: np.ndarray, fraction: float, raw: _Raw, path: Path):
    """A stratified test part of ``fraction`` (seed DATA_SEED), both parts in their original order; a class
    too small to stratify is refused here, naming it (the user can add examples or give a test part)."""
    counts = np.bincount(y, minlength=len(raw.classes))
    small = [k for k in range(len(counts)) if counts[k] < 2]
    if small:
        k = small[0]
        raise DataError(
            f"{path}: class {raw.classes[k]!r} has {counts[k]} example: too few to stratify a test part "
            "(each class needs at least 2: one to train on, one to test). Add examples, drop the class, "
            "or give a test part (a test/ folder, x_test/y_test)"
        )
    n_test = math.ceil(fraction * len(y))
    if n_test < len(counts) or len(y) - n_test < len(counts):
        raise DataError(
            f"{path}: a test fraction of {fraction:g} of {len(y)} examples gives {n_test} test and "
            f"{len(y) - n_test} training examples, too few to hold each of the {len(counts)} classes in both; "
            "change test_fraction (--test-fraction) or give a test part"
        )
    from labelsmooth.experiment.splits import stratified_split  # the one stratified draw (checked above: it stratifies)

    idx_tr, idx_te = stratified_split(np.arange(len(y)), y, n_test, DATA_SEED, what=f"the test part of {path}")
    return x[idx_tr], y[idx_tr], x[idx_te], y[idx_te]


def _sha_files(root: Path, files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0")
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()[:16]


# images


def _image_extensions() -> set[str]:
    from PIL import Image

    return {ext.lower() for ext in Image.registered_extensions()}


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _read_images(root: Path, opts: _Options) -> _Raw:
    try:
        from PIL import Image
    except ImportError as exc:  # matplotlib brings Pillow; name it anyway
        raise MissingExtra("Image folders need Pillow: pip install 'labelsmooth[harness]'") from exc
    subs = _subfolders(root)
    aliases = {a: split for split, names in SPLIT_FOLDERS.items() for a in names}
    split_dirs = {aliases[p.name.lower()]: p for p in subs if p.name.lower() in aliases}
    if split_dirs:
        if "train" not in split_dirs:
            raise DataError(f"{root} has {', '.join(p.name for p in split_dirs.values())}/ but no train/ folder")
        others = [p.name for p in subs if p.name.lower() not in aliases]
        if others:
            raise DataError(
                f"{root} mixes split folders (train/, test/, val/) with other folders: {others}; "
                "put class folders inside train/ (and test/, val/)"
            )
    else:
        split_dirs = {"train": root}
    classes = tuple(p.name for p in _subfolders(split_dirs["train"]))
    if not classes:
        raise DataError(f"{split_dirs['train']} has no class sub-folders (expected one folder of images per class)")
    exts = _image_extensions()
    files: dict[str, list[tuple[Path, int]]] = {}
    for split, folder in split_dirs.items():
        found = [p.name for p in _subfolders(folder)]
        extra = sorted(set(found) - set(classes))
        if extra:
            raise DataError(f"{folder} has class folders that train/ lacks: {extra}")
        files[split] = []
        for k, c in enumerate(classes):
            if not (folder / c).is_dir():
                continue
            images = sorted(
                p
                for p in (folder / c).rglob("*")
                if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in exts
            )
            if not images and split == "train":
                raise DataError(f"Class folder {folder / c} holds no images (extensions Pillow reads, e.g. .png, .jpg)")
            files[split] += [(p, k) for p in images]
    all_files = sorted((p for part in files.values() for p, _ in part), key=lambda p: str(p.relative_to(root)))
    # First pass: headers only (mode and size), so sizes, modes and memory are checked before pixels are read.
    modes, sizes = {}, {}
    for p in all_files:
        try:
            with Image.open(p) as im:
                modes[p], sizes[p] = im.mode, im.size  # size is (W, H)
        except Exception as exc:  # Pillow raises many types for broken files
            raise DataError(f"Cannot read image {p}: {type(exc).__name__}: {exc}") from None
    mode = opts.image_mode
    if mode == "auto":
        mode = "grayscale" if all(m in _GRAY_MODES for m in modes.values()) else "rgb"
    if opts.image_size is None:
        distinct = {}
        for p in all_files:
            distinct.setdefault(sizes[p], p)
        if len(distinct) > 1:
            (s1, p1), (s2, p2) = list(distinct.items())[:2]
            raise DataError(
                f"Images in {root} differ in size ({p1} is {s1[1]}x{s1[0]}, {p2} is {s2[1]}x{s2[0]}, "
                f"{len(distinct)} sizes in all): give a size to resize to (--image-size HxW, image_size=(H, W))"
            )
        w, h = next(iter(distinct))
    else:
        h, w = opts.image_size
    channels = 1 if mode == "grayscale" else 3
    _check_memory(f"The image folder {root}", *_float_bytes(len(all_files), (channels, h, w)))
    x, y = {}, {}
    for split, part in files.items():
        arr = np.empty((len(part), channels, h, w), dtype=np.float32)
        for i, (p, _) in enumerate(part):
            try:
                with Image.open(p) as im:
                    im = im.convert("L" if mode == "grayscale" else "RGB")
                    if im.size != (w, h):
                        im = im.resize((w, h), Image.Resampling.BILINEAR)
                    pixels = np.asarray(im, dtype=np.float32)
            except Exception as exc:
                raise DataError(f"Cannot read image {p}: {type(exc).__name__}: {exc}") from None
            arr[i] = (pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)) / 255.0
        x[split] = arr
        y[split] = np.array([k for _, k in part], dtype=np.int64)
    for split in ("test", "val"):
        if split in x and len(x[split]) == 0:
            raise DataError(f"{split_dirs[split]} holds no images")
    every = sorted((p for p in root.rglob("*") if p.is_file()), key=lambda p: str(p.relative_to(root)))
    return _Raw(x, y, classes, _sha_files(root, every))


# tables


def _pandas():
    try:
        import pandas as pd
    except ImportError as exc:
        raise MissingExtra("Tables (CSV, Parquet) need pandas: pip install 'labelsmooth[tables]'") from exc
    return pd


def _read_table(path: Path, kind: str, opts: _Options) -> _Raw:
    pd = _pandas()
    size = path.stat().st_size  # text takes more bytes than its float32 values, Parquet fewer
    _check_memory(f"The table {path}", size * (1 if kind == "csv" else 4), f"a {size:,}-byte {kind} file")
    try:
        if kind == "parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError as exc:
                raise MissingExtra("Parquet tables need pyarrow: pip install 'labelsmooth[tables]'") from exc
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"Cannot read table {path}: {type(exc).__name__}: {exc}") from None
    label = opts.label_column
    if label not in df.columns:
        raise DataError(f"The table {path} has no column {label!r} (--label-column); its columns: {list(df.columns)}")
    if len(df) == 0:
        raise DataError(f"The table {path} has no rows")
    labels = df[label]
    if labels.isna().any():
        rows = (np.flatnonzero(labels.isna().to_numpy()) + 1).tolist()
        raise DataError(f"The table {path}: label column {label!r} is empty in {len(rows)} rows (data rows {rows[:5]})")
    features = df.drop(columns=[label])
    if features.shape[1] == 0:
        raise DataError(f"The table {path} has no feature columns besides the label column {label!r}")
    non_numeric = [c for c in features.columns if not (pd.api.types.is_numeric_dtype(features[c]))]
    for c in features.columns:
        col = features[c]
        bad = col.isna().to_numpy()
        if c not in non_numeric:
            bad = bad | ~np.isfinite(col.to_numpy(dtype=np.float64, na_value=np.nan))
        if bad.any():
            rows = (np.flatnonzero(bad) + 1).tolist()
            raise DataError(
                f"The table {path}: feature column {c!r} has {len(rows)} missing, NaN or infinite value"
                f"{'s' if len(rows) > 1 else ''} (data rows {rows[:5]}{', ...' if len(rows) > 5 else ''}, "
                "counted from 1 below the header); fill or drop them first"
            )
    if non_numeric:
        if opts.categorical == "error":
            c = non_numeric[0]
            raise DataError(
                f"The table {path} has non-numeric feature columns {non_numeric} (e.g. {features[c].iloc[0]!r} in "
                f"{c!r}): convert them to numbers, drop them, or one-hot encode them (--one-hot, categorical='onehot')"
            )
        for c in non_numeric:
            values = features[c].astype(str)
            cats = sorted(values.unique())
            onehot = pd.get_dummies(pd.Categorical(values, categories=cats), prefix=str(c), dtype=np.float32)
            onehot.index = features.index
            at = list(features.columns).index(c)
            features = pd.concat([features.iloc[:, :at], onehot, features.iloc[:, at + 1 :]], axis=1)
    classes, y = _classes_of(labels.to_numpy())
    x = features.to_numpy(dtype=np.float32)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    return _Raw({"train": x}, {"train": y}, classes, digest)


def _classes_of(*labels: np.ndarray) -> tuple:
    """Sorted class values over all parts (as text), then each part's labels as indices into them."""
    values = [np.asarray(v) for v in labels]
    if all(v.dtype.kind == "f" and np.all(v == np.round(v)) for v in values):  # 0.0, 1.0, ... are 0, 1, ...
        values = [v.astype(np.int64) for v in values]
    try:
        uniq = np.unique(np.concatenate(values))
    except TypeError:  # mixed types in an object column: compare as text
        values = [v.astype(str) for v in values]
        uniq = np.unique(np.concatenate(values))
    index = [np.searchsorted(uniq, v).astype(np.int64) for v in values]
    return (tuple(str(u) for u in uniq), *index)


# npz and Python data


def _read_npz(path: Path) -> _Raw:
    try:
        with np.load(path, allow_pickle=False) as f:
            names = set(f.files)
            for key in ("x_train", "y_train"):
                if key not in names:
                    raise DataError(f"Expected arrays x_train and y_train in {path}, but it holds {sorted(names)}")
            for a, b in (("x_test", "y_test"), ("x_val", "y_val")):
                if (a in names) != (b in names):
                    raise DataError(f"{path} holds {a if a in names else b} without {b if a in names else a}")
            inputs = [key for key in ("x_train", "x_test", "x_val") if key in names]
            size = sum(f.zip.getinfo(key + ".npy").file_size for key in inputs)  # all parts are held at once
            _check_memory(f"{', '.join(inputs)} in {path}", size, f"{size:,} bytes uncompressed")
            arrays = {
                k: f[k] for k in ("x_train", "y_train", "x_test", "y_test", "x_val", "y_val", "classes") if k in names
            }
    except DataError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, ValueError (pickled objects), OSError
        raise DataError(f"Cannot read {path}: {type(exc).__name__}: {exc}") from None
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    splits = [s for s in ("train", "test", "val") if "x_" + s in arrays]
    x, y = {}, {}
    for s in splits:
        xs, ys = np.asarray(arrays["x_" + s]), np.asarray(arrays["y_" + s])
        if xs.ndim == 1:
            xs = xs[:, None]
        if xs.dtype.kind not in "biuf":
            raise DataError(f"Expected numbers in x_{s} of {path}, but got dtype {xs.dtype}")
        if ys.ndim != 1 or len(ys) != len(xs):
            raise DataError(
                f"Expected y_{s} of shape ({len(xs)},) in {path} (one label per row of x_{s}), but got {ys.shape}"
            )
        xs = xs.astype(np.float32)
        if not np.isfinite(xs).all():
            n = int((~np.isfinite(xs)).reshape(len(xs), -1).any(axis=1).sum())
            raise DataError(f"x_{s} in {path} has NaN or infinite values in {n} rows")
        if s != "train" and xs.shape[1:] != x["train"].shape[1:]:
            raise DataError(f"x_{s} in {path} has rows of shape {xs.shape[1:]}, x_train {x['train'].shape[1:]}")
        x[s], y[s] = xs, ys
    if len(x["train"]) == 0:
        raise DataError(f"x_train in {path} is empty")
    classes, *index = _classes_of(*(y[s] for s in splits))
    if "classes" in arrays:
        names = tuple(str(c) for c in np.asarray(arrays["classes"]).ravel())
        ints = all(y[s].dtype.kind in "iu" for s in splits)
        top = max(int(y[s].max()) for s in splits if len(y[s])) if ints else -1
        if not ints or min(int(y[s].min()) for s in splits if len(y[s])) < 0 or top >= len(names):
            raise DataError(
                f"Expected labels in [0, {len(names)}) with `classes` ({len(names)} names) in {path}, "
                f"but got {classes[0]}..{classes[-1]}"
            )
        classes, index = names, [y[s].astype(np.int64) for s in splits]
    return _Raw(x, dict(zip(splits, index)), tuple(classes), h.hexdigest()[:16])


def _as_arrays(part, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` from a tuple of tensors/arrays or a map-style torch Dataset."""
    if isinstance(part, torch.utils.data.Dataset):
        try:
            n = len(part)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(
                f"Expected `{what}` to be a map-style torch Dataset (with len), but it has no len()"
            ) from None
        if n == 0:
            raise DataError(f"`{what}` (a {type(part).__name__}) is empty")
        first = part[0]
        if not isinstance(first, (tuple, list)) or len(first) != 2:
            raise TypeError(f"Expected `{what}`[i] to be an (x, y) pair, but got {type(first).__name__}")
        shape = tuple(torch.as_tensor(first[0]).shape)
        _check_memory(f"`{what}`", *_float_bytes(n, shape))
        xs = np.empty((n, *shape), dtype=np.float32)
        ys = []
        for i in range(n):
            xi, yi = part[i]
            xi = torch.as_tensor(xi)
            if tuple(xi.shape) != shape:
                raise DataError(f"`{what}`[{i}] has an input of shape {tuple(xi.shape)}, but `{what}`[0] has {shape}")
            xs[i] = xi.detach().cpu().numpy()
            ys.append(yi.item() if isinstance(yi, torch.Tensor) else yi)
        return xs, np.asarray(ys)
    if isinstance(part, (tuple, list)) and len(part) == 2:
        x, y = part
        x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        y = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        return x, y
    raise TypeError(
        f"Expected `{what}` to be (x, y) tensors or arrays, a dict of arrays or a torch Dataset, "
        f"but got {type(part).__name__}"
    )


def _write_arrays(source, test, val, classes) -> Path:
    """Python data written once as ``<cache>/user/<content hash>.npz``; returns its path."""
    if isinstance(source, Dataset):
        arrays = {
            "x_train": source.x_train,
            "y_train": source.y_train,
            "x_test": source.x_test,
            "y_test": source.y_test,
        }
        if source.x_val is not None:
            arrays |= {"x_val": source.x_val, "y_val": source.y_val}
        classes = classes if classes is not None else source.classes
        arrays = {k: v.numpy() for k, v in arrays.items()}
    elif isinstance(source, dict):
        arrays = {
            k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)) for k, v in source.items()
        }
        unknown = sorted(set(arrays) - {"x_train", "y_train", "x_test", "y_test", "x_val", "y_val", "classes"})
        if unknown:
            raise ValueError(
                f"Expected keys x_train, y_train, x_test, y_test, x_val, y_val, classes, but got {unknown}"
            )
    else:
        arrays = dict(zip(("x_train", "y_train"), _as_arrays(source, "source")))
    for part, key in ((test, "test"), (val, "val")):
        if part is not None:
            arrays["x_" + key], arrays["y_" + key] = _as_arrays(part, key)
    if classes is not None:
        arrays["classes"] = np.asarray([str(c) for c in classes])
    for key in list(arrays):
        if arrays[key].dtype.kind == "O":
            arrays[key] = arrays[key].astype(str)
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}|{a.dtype.str}|{a.shape}|".encode() + a.tobytes())
    folder = cache_dir() / "user"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"arrays-{h.hexdigest()[:16]}.npz"
    if not path.is_file():
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    return path
