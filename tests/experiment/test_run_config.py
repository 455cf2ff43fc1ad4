"""RunConfig.validate: every rule gives an error naming the field, the rule and the value."""

from __future__ import annotations

import pytest

from labelsmooth.experiment.config import RunConfig


def test_valid_configs_pass_and_chain():
    for c in [
        RunConfig("digits", "mlp"),
        RunConfig("digits", "mlp", loss="ls", gamma=0.9),
        RunConfig("digits", "mlp", loss="ls", gamma=1.0),  # no smoothing at all: allowed
        RunConfig("cifar100", "resnet", loss="ls", smoothing=0.1, convention="others"),
        RunConfig("mnist1d", "cnn1d", loss="cp", beta=0.0),
        RunConfig("fashion-mnist", "cnn", optimizer="sgd", lr=0.1, schedule="constant", augment=True),
    ]:
        assert c.validate() is c


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(dataset="imagenet"), r"Expected `dataset` to be one of .*'imagenet'"),
        (dict(model="vgg"), r"Expected `model` to be one of .*'vgg'"),
        (dict(model="auto"), r"resolve it first with .*default_model"),
        (dict(loss="mse"), r"Expected `loss` to be one of \['ce', 'ls', 'cp'\], but got 'mse'"),
        (dict(loss="ls", gamma=0.1), r"\(1/K, 1\] = \(0.1, 1\] for digits \(K = 10\), but got 0.1"),
        (dict(loss="ls", gamma=1.5), r"but got 1.5"),
        (dict(loss="ls", gamma=0.9, smoothing=0.1), "exactly one of `gamma` and `smoothing`.*both"),
        (dict(loss="ls"), "exactly one of `gamma` and `smoothing`.*neither"),
        (dict(loss="ls", gamma=0.9, convention="others"), "`convention` to stay at its default with `gamma`"),
        (dict(loss="ls", smoothing=1.0), r"`smoothing` in \[0, 1\) for convention='uniform'"),
        (dict(loss="ls", smoothing=0.9, convention="others"), r"\[0, 0.9\) for convention='others'"),
        (dict(loss="ls", smoothing=-0.1), "but got -0.1"),
        (dict(loss="ls", smoothing=0.1, convention="fairseq"), "Expected `convention` to be one of"),
        (dict(gamma=0.9), "Expected `gamma` to be None for loss='ce'"),
        (dict(beta=0.5), "Expected `beta` to be None for loss='ce'"),
        (dict(convention="others"), "Expected `convention` to stay 'uniform' for loss='ce'"),
        (dict(loss="cp"), "Expected `beta`.*for loss='cp', but got None"),
        (dict(loss="cp", beta=-1.0), "Expected `beta` to be >= 0"),
        (dict(loss="cp", beta=float("nan")), "Expected `beta` to be a finite number"),
        (dict(epochs=0), "Expected `epochs` to be an integer >= 1, but got 0"),
        (dict(epochs=2.5), "Expected `epochs` to be an integer >= 1, but got float"),
        (dict(batch_size=True), "Expected `batch_size` to be an integer >= 1, but got bool"),
        (dict(optimizer="adam"), r"Expected `optimizer` to be one of \['adamw', 'sgd'\]"),
        (dict(lr=0.0), "Expected `lr` to be > 0"),
        (dict(weight_decay=-1e-4), "Expected `weight_decay` to be >= 0"),
        (dict(momentum=1.0), r"Expected `momentum` to be in \[0, 1\)"),
        (dict(schedule="step"), "Expected `schedule` to be one of"),
        (dict(train_size=0), "Expected `train_size` to be an integer >= 1"),
        (dict(dataset="mnist1d", model="cnn1d", augment=True), "Expected `augment` to be False for mnist1d"),
    ],
)
def test_bad_configs_name_the_field(fields, message):
    base = dict(dataset="digits", model="mlp")
    with pytest.raises((ValueError, TypeError), match=message):
        RunConfig(**{**base, **fields}).validate()


def test_gamma_bound_uses_the_data_sets_class_count():
    RunConfig("cifar100", "resnet", loss="ls", gamma=0.05).validate()  # 0.05 > 1/100
    with pytest.raises(ValueError, match=r"\(0.01, 1\] for cifar100 \(K = 100\)"):
        RunConfig("cifar100", "resnet", loss="ls", gamma=0.01).validate()
