"""Train/validation/test splits: disjoint, stratified, fixed by (data set, split), re-drawn where they must be."""

import numpy as np
import pytest
import torch

from labelsmooth.experiment.data import Dataset, load
from labelsmooth.experiment.splits import make_splits


def _synthetic(name="synthetic", n_train=300, n_test=100, k=3, x_val=None, y_val=None):
    g = torch.Generator().manual_seed(0)
    y_tr = torch.arange(n_train) % k
    y_te = torch.arange(n_test) % k
    fields = dict(
        name=name,
        x_train=torch.randn(n_train, 1, 4, generator=g),
        y_train=y_tr,
        x_test=torch.randn(n_test, 1, 4, generator=g),
        y_test=y_te,
        classes=tuple(str(i) for i in range(k)),
        source="test",
    )
    d = Dataset(**fields)
    if x_val is not None:  # a data set that brings its own validation part (as user data sets may)
        object.__setattr__(d, "x_val", x_val)
        object.__setattr__(d, "y_val", y_val)
    return d


def _pool(d):
    parts = [d.x_train] + ([d.x_val] if getattr(d, "x_val", None) is not None else []) + [d.x_test]
    return torch.cat(parts)


def _assert_disjoint_and_complete(s, pool_size):
    tr, va, te = set(s.train_index), set(s.val_index), set(s.test_index)
    assert not tr & va and not tr & te and not va & te, "an example lies in two parts"
    assert len(tr) + len(va) + len(te) == pool_size, "every example is in exactly one part"


def _assert_stratified(y_part, y_whole, k):
    # each class's share of the part is its share of the whole, to within one example
    expected = np.bincount(y_whole, minlength=k) * len(y_part) / len(y_whole)
    assert np.all(np.abs(np.bincount(y_part, minlength=k) - expected) <= 1 + 1e-9)


@pytest.mark.parametrize("split", [0, 1, 3])
def test_digits_parts_are_disjoint_stratified_and_the_tensors_match_the_indices(split):
    d = load("digits")
    s = make_splits(d, split=split, val_fraction=0.2)
    _assert_disjoint_and_complete(s, 1797)
    assert s.sizes() == {"train": 1077, "val": 270, "test": 450}
    pool, y = _pool(d), torch.cat([d.y_train, d.y_test]).numpy()
    assert torch.equal(s.x_val, pool[s.val_index]) and torch.equal(s.x_test, pool[s.test_index])
    assert torch.equal(s.x_train, pool[s.train_index]) and np.array_equal(s.y_train.numpy(), y[s.train_index])
    _assert_stratified(s.y_val.numpy(), y[np.concatenate([s.train_index, s.val_index])], 10)
    _assert_stratified(s.y_test.numpy(), y, 10)


def test_digits_resplits_redraw_train_test_and_validation_but_split_0_keeps_the_standard_test():
    d = load("digits")
    s0, s1, s2 = (make_splits(d, split=r) for r in (0, 1, 2))
    assert np.array_equal(s0.test_index, np.arange(1347, 1797))  # split 0: the standard test part
    assert not np.array_equal(s1.test_index, s0.test_index) and not np.array_equal(s2.test_index, s1.test_index)
    assert not np.array_equal(s1.val_index, s0.val_index)
    again = make_splits(d, split=1)
    assert np.array_equal(again.val_index, s1.val_index) and np.array_equal(again.test_index, s1.test_index)


def test_an_official_test_part_is_never_redrawn_only_validation_is():
    d = _synthetic()
    s0, s1 = make_splits(d, split=0), make_splits(d, split=1)
    for s in (s0, s1):
        _assert_disjoint_and_complete(s, 400)
        assert np.array_equal(s.test_index, np.arange(300, 400))
        assert s.sizes() == {"train": 240, "val": 60, "test": 100}
        _assert_stratified(s.y_val.numpy(), d.y_train.numpy(), 3)
    assert not np.array_equal(s0.val_index, s1.val_index)


def test_a_given_validation_part_is_used_instead_of_carving_one():
    g = torch.Generator().manual_seed(1)
    d = _synthetic(x_val=torch.randn(30, 1, 4, generator=g), y_val=torch.arange(30) % 3)
    s = make_splits(d, split=0)
    assert s.sizes() == {"train": 300, "val": 30, "test": 100}
    assert torch.equal(s.x_val, d.x_val) and torch.equal(s.x_train, d.x_train)
    s1 = make_splits(d, split=1)  # a re-split draws the same number of validation examples from train + val
    _assert_disjoint_and_complete(s1, 430)
    assert s1.sizes() == {"train": 300, "val": 30, "test": 100}


def test_a_class_too_small_to_stratify_still_gives_disjoint_parts():
    d = _synthetic(n_train=20, k=3)
    y = d.y_train.clone()
    y[:] = 0
    y[0] = 1  # class 1 has a single example, class 2 none
    d = Dataset(d.name, d.x_train, y, d.x_test, d.y_test, d.classes, d.source)
    s = make_splits(d, val_fraction=0.25)
    _assert_disjoint_and_complete(s, 120)
    assert s.sizes()["val"] == 5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(split=-1), "`split` to be an integer >= 0, but got -1"),
        (dict(val_fraction=1.0), "`val_fraction` to be a number in (0, 1), but got 1.0"),
        (dict(val_fraction=0), "`val_fraction` to be a number in (0, 1), but got 0"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError) as e:
        make_splits(_synthetic(), **kwargs)
    assert message in str(e.value)


def test_a_part_that_cannot_be_stratified_is_drawn_at_random_with_a_warning_naming_the_reason():
    """The one carve of every part (splits, study, user data): stratified, or random with a SplitWarning."""
    from labelsmooth.experiment.splits import SplitWarning, stratified_split

    d = _synthetic(n_train=20, k=3)
    y = d.y_train.clone()
    y[:] = 0
    y[0] = 1
    d = Dataset(d.name, d.x_train, y, d.x_test, d.y_test, d.classes, d.source)
    with pytest.warns(SplitWarning, match=r"the validation part of synthetic is drawn at random, not stratified: "
                                          r"class 1 has 1 example"):  # fmt: skip
        make_splits(d, val_fraction=0.25)
    with pytest.warns(SplitWarning, match=r"2 of 12 examples cannot hold each of the 3 classes on both sides"):
        stratified_split(np.arange(12), np.arange(12) % 3, 2, seed=0, what="the part")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a stratifiable part warns of nothing
        rest, part = stratified_split(np.arange(12), np.arange(12) % 3, 3, seed=0)
    assert sorted((np.arange(12) % 3)[part].tolist()) == [0, 1, 2]
    assert sorted(rest.tolist() + part.tolist()) == list(range(12))
