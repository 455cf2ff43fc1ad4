"""train(): the record's contract, determinism, the losses it uses, augmentation, divergence."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import labelsmooth
from labelsmooth.experiment.config import RunConfig
from labelsmooth.experiment.metrics import PROTOCOL_METRICS
from labelsmooth.experiment.train import TrainingDiverged, augment, batches, make_loss, train

TINY = dict(dataset="digits", model="mlp", epochs=2, train_size=200, test_size=100, batch_size=32)


def _run(**fields):
    return train(RunConfig(**{**TINY, **fields}), progress=False, threads=1)


def test_record_has_the_documented_keys_and_is_json():
    config = RunConfig(**TINY)
    r = train(config, progress=False, threads=1)
    assert r["config"] == config.to_dict() and r["key"] == config.key()
    assert set(r["metrics"]) == set(PROTOCOL_METRICS) and all(isinstance(v, float) for v in r["metrics"].values())
    assert len(r["curves"]["train_loss"]) == len(r["curves"]["val_accuracy"]) == 2
    assert r["curves"]["val_accuracy"][-1] == r["metrics"]["val_accuracy"]  # the curve is validation, not test
    assert set(r["timings"]) >= {"data", "train", "eval", "total"}
    assert r["timings"]["total"] >= r["timings"]["train"] + r["timings"]["eval"] > 0
    assert {"python", "torch", "labelsmooth", "numpy"} <= set(r["versions"])
    assert {"platform", "cpu", "threads"} <= set(r["machine"]) and r["machine"]["threads"] == 1
    # 200 training examples: 160 train and a stratified 40 for validation; the 100 test examples stay test
    assert (r["data"]["train_size"], r["data"]["val_size"], r["data"]["test_size"]) == (160, 40, 100)
    preds = r.pop("predictions")
    assert preds["val"]["logits"].shape == (40, 10) and preds["test"]["logits"].dtype == np.float16
    assert json.loads(json.dumps(r)) == r


@pytest.mark.parametrize(
    "fields",
    [
        dict(),
        dict(loss="ls", gamma=0.8),
        dict(loss="cp", beta=0.5),
        dict(optimizer="sgd", augment=True, model="cnn"),
    ],
)
def test_same_config_gives_identical_results(fields):
    a, b = _run(**fields), _run(**fields)
    assert a["metrics"] == b["metrics"] and a["curves"] == b["curves"]


def test_seed_changes_the_run_and_restores_global_state():
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    a, b = _run(seed=0), _run(seed=1)
    assert a["curves"]["train_loss"] != b["curves"]["train_loss"]
    assert torch.equal(torch.rand(1), expected)  # the run did not consume the global RNG
    assert torch.get_num_threads() == threads and torch.are_deterministic_algorithms_enabled() == det


def test_gamma_is_the_others_convention_with_eps_one_minus_gamma():
    z, y = torch.randn(16, 10, dtype=torch.float64), torch.randint(0, 10, (16,))
    loss = make_loss(RunConfig("digits", "mlp", loss="ls", gamma=0.8), 10)(z, y)
    q = torch.full((16, 10), 0.2 / 9, dtype=torch.float64)
    q[torch.arange(16), y] = 0.8  # γ on the true class, (1 − γ)/(K − 1) on each other
    assert torch.allclose(loss, -(q * torch.log_softmax(z, 1)).sum(1).mean(), rtol=1e-12)


def test_smoothing_and_cp_losses_come_from_the_library():
    z, y = torch.randn(16, 10, dtype=torch.float64), torch.randint(0, 10, (16,))
    ls = make_loss(RunConfig("digits", "mlp", loss="ls", smoothing=0.1, convention="uniform"), 10)(z, y)
    assert torch.allclose(ls, torch.nn.functional.cross_entropy(z, y, label_smoothing=0.1), rtol=1e-12)
    cp = make_loss(RunConfig("digits", "mlp", loss="cp", beta=0.5), 10)(z, y)
    p = torch.softmax(z, 1)
    entropy = -(p * p.log()).sum(1).mean()
    assert torch.allclose(cp, torch.nn.functional.cross_entropy(z, y) - 0.5 * entropy, rtol=1e-12)
    ce = make_loss(RunConfig("digits", "mlp"), 10)(z, y)
    assert torch.equal(ce, labelsmooth.cross_entropy(z, y))


def test_huge_learning_rate_diverges_with_a_clear_error():
    with pytest.raises(TrainingDiverged, match=r"Training diverged: the loss is (nan|inf).*lr=1e\+10.*smaller --lr"):
        _run(optimizer="sgd", lr=1e10)
    assert issubclass(TrainingDiverged, RuntimeError)


def test_bad_config_is_refused_before_training():
    with pytest.raises(ValueError, match="Expected `gamma`"):
        train(RunConfig("digits", "mlp", loss="ls", gamma=0.05), progress=False)
    with pytest.raises(TypeError, match="Expected argument `config` to be a RunConfig"):
        train({"dataset": "digits"}, progress=False)


def test_augment_crops_are_shifted_windows_and_flips_mirror():
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)
    gen = torch.Generator().manual_seed(0)
    out = augment(x, 2, False, gen)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):  # each output is some 5×5 window of the zero-padded image, the same for every channel
        windows = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(padded[i, :, dy : dy + 5, dx : dx + 5], out[i])
        ]
        assert len(windows) == 1
    flipped = [augment(x, 0, True, torch.Generator().manual_seed(s)) for s in range(20)]
    assert all(torch.equal(f[i], x[i]) or torch.equal(f[i], x[i].flip(-1)) for f in flipped for i in range(2))
    assert any(torch.equal(f[0], x[0].flip(-1)) for f in flipped) and any(torch.equal(f[0], x[0]) for f in flipped)


def test_batches_cover_every_example_once():
    seen = torch.cat(list(batches(100, 32, torch.Generator().manual_seed(0))))
    assert sorted(seen.tolist()) == list(range(100))
    assert [len(b) for b in batches(65, 32, torch.Generator())] == [32, 32]  # a lone last example is dropped


@pytest.mark.slow
def test_digits_mlp_learns():
    r = train(RunConfig("digits", "mlp", epochs=10), progress=False, threads=1)
    assert r["metrics"]["accuracy"] > 0.9
    assert r["curves"]["train_loss"][-1] < r["curves"]["train_loss"][0]
    assert not math.isnan(r["metrics"]["nll"])


@pytest.mark.parametrize(("dataset", "model"), [("cifar10", "resnet"), ("cifar100", "cnn"), ("mnist", "cnn")])
def test_file_data_sets_train_end_to_end(tmp_path, monkeypatch, dataset, model):
    from _harness_files import write_cifar, write_idx_set

    monkeypatch.delenv("LABELSMOOTH_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    if dataset == "mnist":
        write_idx_set(tmp_path / "mnist", n_train=40, n_test=20)
    else:
        write_cifar(tmp_path / "cifar", hundred=dataset == "cifar100")
    config = RunConfig(dataset, model, epochs=1, batch_size=16, augment=True, loss="ls", gamma=0.9)
    r = train(
        config,
        data_dir=str(tmp_path / ("mnist" if dataset == "mnist" else "cifar")),
        progress=False,
        threads=1,
    )
    assert r["data"]["num_classes"] == (100 if dataset == "cifar100" else 10)
    assert 0.0 <= r["metrics"]["accuracy"] <= 1.0 and math.isfinite(r["metrics"]["nll"])
