"""Train, validation and test parts of a data set: ``make_splits(dataset, split, val_fraction) -> Splits``.

The protocol (docs/experiments.md, "The protocol"):

- **Validation** is carved from the training part: a stratified ``val_fraction`` of it
  (``sklearn.model_selection.train_test_split``, ``random_state = VAL_SEED + split``). A data set that
  comes with its own validation part (``Dataset.x_val``/``y_val`` not None) keeps it for ``split = 0``.
- **Test** is the data set's test part, read only for the final numbers. For data sets without an official
  test split (:data:`REDRAW_TEST`: digits, whose 1,347/450 split is our own stratified draw), ``split > 0``
  re-draws train/test too: the pooled examples are split again, stratified, at the same test size
  (``random_state = TEST_SEED + split``), so the split variance is measured and not ignored.
- Every carve is :func:`stratified_split` (also the study's and a user data set's test carve): where a
  class is too small to stratify it draws at random and says so with a :class:`SplitWarning`.
- ``split = 0`` is the standard partition; ``split = r`` is the r-th re-split. Every part depends only on
  the data set, ``split`` and ``val_fraction``, never on the run's seed.

Sizes with ``val_fraction = 0.2`` (train / validation / test): digits 1,077 / 270 / 450; mnist1d
3,200 / 800 / 1,000; Fashion-MNIST 48,000 / 12,000 / 10,000 (its 10,000/2,000 subset: 8,000 / 2,000 /
2,000).

**Label noise** (:func:`with_label_noise`, ``RunConfig.label_noise``): a fraction ρ of the training and
validation labels is replaced by a class drawn uniformly from the *other* K − 1 classes (symmetric noise,
as in Lukasik et al. 2020, "Does label smoothing mitigate label noise?", ICML); exactly round(ρ·n) labels of
each part change, so ρ is the fraction that is wrong. The test labels stay clean. The draw depends only
on the split and ρ (``NOISE_SEED + split``), so every seed and loss setting sees the same noisy labels.

Inputs are standardised once by :mod:`labelsmooth.experiment.data` with the standard training part's
per-channel mean and standard deviation (a fixed affine map that reads no label); re-splits reuse it.

Example:
    >>> from labelsmooth.experiment.data import load
    >>> s = make_splits(load("digits"), split=0, val_fraction=0.2)
    >>> len(s.y_train), len(s.y_val), len(s.y_test)
    (1077, 270, 450)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from labelsmooth.experiment.data import Parts

#: Seeds of the validation carve and of the train/test re-draw: ``VAL_SEED + split``, ``TEST_SEED + split``.
VAL_SEED = 1000
TEST_SEED = 2000
NOISE_SEED = 3000
#: Data sets whose test part is our own draw (no official test split): ``split > 0`` re-draws it.
REDRAW_TEST = frozenset({"digits"})
DEFAULT_VAL_FRACTION = 0.2


@dataclass(frozen=True)
class Splits(Parts):
    """The three parts as tensors, and where each example came from.

    ``*_index`` are positions in the *pool*: the data set's training rows, then its validation rows (if it
    has its own), then its test rows, in that order. They are disjoint by construction; the tests check it.
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    train_index: np.ndarray
    val_index: np.ndarray
    test_index: np.ndarray
    classes: tuple[str, ...]
    source: str

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


class SplitWarning(UserWarning):
    """A part that could not be drawn stratified by class and was drawn at random instead (the message says why)."""


def stratified_split(
    index: np.ndarray, y: np.ndarray, size: int, seed: int, *, what: str = "the part"
) -> tuple[np.ndarray, np.ndarray]:
    """``(rest, part)``: ``size`` of ``index`` drawn stratified by its labels ``y``, both sorted.

    The one draw of every carved part (validation here, the test part of a user data set in
    :mod:`labelsmooth.experiment.user_data`): ``sklearn.model_selection.train_test_split(index,
    test_size=size, stratify=y, random_state=seed)``. Stratifying needs every class present to have at
    least 2 examples, and both sides to have room for one of each class. Where that fails, the part is drawn
    uniformly at random with the same seed (``numpy.random.default_rng(seed).permutation``) and a
    :class:`SplitWarning` names ``what``, the smallest class and the reason: the split still happens (tiny
    subsets and test fixtures rely on it), but never silently. Callers that can tell the user what to
    change check first and raise instead (a user data set's test part, :func:`user_data.register`).

    Example:
        >>> rest, part = stratified_split(np.arange(8), np.array([0, 0, 0, 0, 1, 1, 1, 1]), 4, seed=0)
        >>> len(part), sorted(np.array([0, 0, 0, 0, 1, 1, 1, 1])[part].tolist())
        (4, [0, 0, 1, 1])
    """
    from sklearn.model_selection import train_test_split

    index, y = np.asarray(index), np.asarray(y)
    counts = np.bincount(y)
    present = np.flatnonzero(counts)
    smallest = int(present[np.argmin(counts[present])])
    if counts[smallest] < 2:
        why = f"class {smallest} has {counts[smallest]} example (stratifying needs 2 of each class)"
    elif size < len(present) or len(index) - size < len(present):
        why = f"{size} of {len(index)} examples cannot hold each of the {len(present)} classes on both sides"
    else:
        rest, part = train_test_split(index, test_size=size, stratify=y, random_state=seed)
        return np.sort(rest), np.sort(part)
    import warnings

    warnings.warn(f"{what} is drawn at random, not stratified: {why}", SplitWarning, stacklevel=2)
    order = np.random.default_rng(seed).permutation(len(index))
    return np.sort(index[order[size:]]), np.sort(index[order[:size]])


def _shown(name: str) -> str:
    from labelsmooth.experiment import user_data

    return user_data.short_name(name) if user_data.is_user_name(name) else name


def make_splits(dataset, split: int = 0, val_fraction: float = DEFAULT_VAL_FRACTION) -> Splits:
    """Train/validation/test parts of any :class:`labelsmooth.experiment.data.Dataset` (module docstring).

    Args:
        dataset: has ``name``, ``x_train``, ``y_train``, ``x_test``, ``y_test``, ``classes``, ``source`` and
            optionally ``x_val``/``y_val`` (None: carve validation from train).
        split: 0 for the standard partition, r > 0 for the r-th re-split.
        val_fraction: the part of the training rows that becomes validation, in (0, 1).

    Raises:
        ValueError: naming the argument, for a split < 0, a fraction outside (0, 1), or a training part too
            small to leave at least one example on each side.
    """
    if isinstance(split, bool) or not isinstance(split, int) or split < 0:
        raise ValueError(f"Expected `split` to be an integer >= 0, but got {split!r}")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise ValueError(f"Expected `val_fraction` to be a number in (0, 1), but got {val_fraction!r}")
    x_val_given = getattr(dataset, "x_val", None)
    y_val_given = getattr(dataset, "y_val", None)
    parts_x = [dataset.x_train]
    parts_y = [dataset.y_train]
    n_train = len(dataset.y_train)
    n_val_given = 0
    if x_val_given is not None:
        if y_val_given is None or len(x_val_given) != len(y_val_given):
            raise ValueError(f"Expected {dataset.name}'s `x_val` and `y_val` to have equal lengths")
        parts_x.append(x_val_given)
        parts_y.append(y_val_given)
        n_val_given = len(y_val_given)
    parts_x.append(dataset.x_test)
    parts_y.append(dataset.y_test)
    x = torch.cat([torch.as_tensor(p) for p in parts_x])
    y = torch.cat([torch.as_tensor(p) for p in parts_y]).long()
    y_np = y.numpy()
    n_test = len(dataset.y_test)
    train_pool = np.arange(n_train + n_val_given)
    test_index = np.arange(n_train + n_val_given, len(y_np))
    if split > 0 and dataset.name in REDRAW_TEST:
        train_pool, test_index = stratified_split(
            np.arange(len(y_np)), y_np, n_test, TEST_SEED + split, what=f"the test part of {_shown(dataset.name)}"
        )
    if n_val_given and split == 0:
        train_index, val_index = np.arange(n_train), np.arange(n_train, n_train + n_val_given)
    else:
        n_val = n_val_given or int(np.ceil(val_fraction * len(train_pool)))
        if not 1 <= n_val < len(train_pool):
            raise ValueError(
                f"Expected a training part of at least 2 examples to carve a validation part from, but "
                f"{dataset.name} has {len(train_pool)} (val_fraction={val_fraction})"
            )
        train_index, val_index = stratified_split(
            train_pool, y_np[train_pool], n_val, VAL_SEED + split, what=f"the validation part of {_shown(dataset.name)}"
        )
    return Splits(
        dataset.name,
        x[train_index],
        y[train_index],
        x[val_index],
        y[val_index],
        x[test_index],
        y[test_index],
        train_index,
        val_index,
        test_index,
        tuple(dataset.classes),
        str(dataset.source),
    )


def with_label_noise(splits: Splits, rate: float, split: int = 0) -> Splits:
    """The splits with a fraction ``rate`` of the training and validation labels made wrong (module docstring).

    Each part gets exactly ``round(rate · n)`` corrupted labels, at positions drawn without replacement,
    each replaced by a class drawn uniformly from the K − 1 others (K = ``len(splits.classes)``).

    Example:
        >>> from labelsmooth.experiment.data import load
        >>> clean = make_splits(load("digits"))
        >>> noisy = with_label_noise(clean, 0.2)
        >>> int((noisy.y_train != clean.y_train).sum()), len(clean.y_train)
        (215, 1077)
        >>> bool((noisy.y_test == clean.y_test).all())
        True
    """
    import dataclasses

    K = len(splits.classes)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1 - 1 / K:
        raise ValueError(f"Expected `rate` (label noise) to be a number in [0, 1 - 1/K) with K = {K}, but got {rate!r}")
    if rate == 0:
        return splits
    rng = np.random.default_rng(NOISE_SEED + split)

    def corrupt(y: Tensor) -> Tensor:
        y = y.clone()
        n = len(y)
        where = torch.as_tensor(rng.choice(n, size=int(round(rate * n)), replace=False), dtype=torch.long)
        shift = torch.as_tensor(rng.integers(1, K, size=len(where)), dtype=torch.long)  # 1..K-1: never the same
        y[where] = (y[where] + shift) % K
        return y

    return dataclasses.replace(splits, y_train=corrupt(splits.y_train), y_val=corrupt(splits.y_val))


def part_sizes(data: dict) -> str:
    """``"113 train / 29 validation / 36 test"`` from a run record's ``data`` (without a validation part, two).

    Example:
        >>> part_sizes({"train_size": 113, "val_size": 29, "test_size": 36})
        '113 train / 29 validation / 36 test'
    """
    val = f" / {data['val_size']} validation" if data.get("val_size") else ""
    return f"{data.get('train_size')} train{val} / {data.get('test_size')} test"
