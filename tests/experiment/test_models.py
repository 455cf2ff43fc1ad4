"""Models: forward shapes for every model on the inputs it is meant for, and the ``auto`` choice."""

from __future__ import annotations

import pytest
import torch

from labelsmooth.experiment.data import DATASETS
from labelsmooth.experiment.models import MODELS, build, default_model


@pytest.mark.parametrize(
    ("name", "shape", "K"),
    [
        ("mlp", (1, 8, 8), 10),
        ("mlp", (1, 40), 10),
        ("cnn", (1, 8, 8), 10),
        ("cnn", (1, 28, 28), 10),
        ("cnn", (3, 32, 32), 100),
        ("resnet", (1, 28, 28), 10),
        ("resnet", (3, 32, 32), 100),
        ("cnn1d", (1, 40), 10),
    ],
)
def test_forward_shape(name, shape, K):
    model = build(name, shape, K)
    out = model(torch.randn(3, *shape))
    assert out.shape == (3, K) and out.dtype == torch.float32
    out.sum().backward()  # every parameter takes part
    assert all(p.grad is not None for p in model.parameters())


def test_resnet20_size():
    # ResNet-20 for CIFAR-10 has 0.27 M parameters (He et al. 2016, Table 6)
    n = sum(p.numel() for p in build("resnet", (3, 32, 32), 10).parameters())
    assert 0.26e6 < n < 0.28e6


def test_auto_choice_covers_every_data_set():
    assert {d: default_model(d) for d in DATASETS} == {
        "digits": "mlp", "mnist1d": "cnn1d", "fashion-mnist": "cnn", "mnist": "cnn",
        "cifar10": "resnet", "cifar100": "resnet",
    }  # fmt: skip
    assert all(default_model(d) in MODELS for d in DATASETS)


def test_unknown_model_and_wrong_input_rank():
    with pytest.raises(ValueError, match="Expected a model name in .*'vgg'"):
        build("vgg", (1, 28, 28), 10)
    with pytest.raises(
        ValueError,
        match=r"Expected model 'cnn1d' to get \(C, L\) sequences, but got inputs of shape \(1, 28, 28\)",
    ):
        build("cnn1d", (1, 28, 28), 10)
    with pytest.raises(ValueError, match="Expected a data set name"):
        default_model("imagenet")


def test_initialisation_follows_the_global_seed():
    torch.manual_seed(3)
    a = build("cnn", (1, 28, 28), 10).state_dict()
    torch.manual_seed(3)
    b = build("cnn", (1, 28, 28), 10).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
