"""Temperature scaling recovers a known temperature; the protocol's metrics read it from validation only."""

import math

import pytest
import torch
import torch.nn.functional as F

from labelsmooth.experiment.calibration import fit_temperature
from labelsmooth.experiment.metrics import evaluate, protocol_metrics


def _sample(true_t, n=40000, k=10, seed=0):
    """Logits z and labels drawn from softmax(z / true_t): the calibrating temperature is true_t."""
    g = torch.Generator().manual_seed(seed)
    z = 4 * torch.randn(n, k, generator=g, dtype=torch.float64)
    y = torch.multinomial(torch.softmax(z / true_t, dim=1), 1, generator=g).squeeze(1)
    return z, y


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_temperature_scaling_recovers_a_known_temperature(true_t):
    z, y = _sample(true_t)
    assert fit_temperature(z, y) == pytest.approx(true_t, rel=0.04)


def test_the_fitted_temperature_is_the_nll_minimum():
    z, y = _sample(1.7, n=5000, seed=3)
    t = fit_temperature(z, y)

    def nll(temp):
        return float(F.cross_entropy(z / temp, y))

    assert nll(t) <= min(nll(t * 0.99), nll(t * 1.01))
    grid = [0.5 + 0.01 * i for i in range(300)]  # brute force over T in [0.5, 3.5)
    assert t == pytest.approx(min(grid, key=nll), abs=0.01)


def test_scaling_keeps_accuracy_and_lowers_validation_nll():
    z, y = _sample(3.0, n=3000, seed=5)  # over-confident logits: T ≈ 3
    m = protocol_metrics(z, y, z, y)
    assert m["temperature"] == pytest.approx(3.0, rel=0.1)
    assert m["ts_nll"] < m["nll"] and m["ts_ece"] < m["ece"]
    assert evaluate(z / m["temperature"], y)["accuracy"] == m["accuracy"]  # argmax unchanged
    assert m["ts_nll"] == pytest.approx(float(F.cross_entropy(z / m["temperature"], y)))


def test_the_temperature_comes_from_validation_not_test():
    zv, yv = _sample(2.0, n=4000, seed=1)
    zt, yt = _sample(0.5, n=4000, seed=2)  # a test part with a very different temperature
    m = protocol_metrics(zv, yv, zt, yt)
    assert m["temperature"] == pytest.approx(fit_temperature(zv, yv))
    assert m["temperature"] == pytest.approx(2.0, rel=0.1)
    shuffled = protocol_metrics(zv, yv, zt, yt[torch.randperm(len(yt))])
    assert shuffled["temperature"] == m["temperature"]


@pytest.mark.parametrize(
    "logits, target, message",
    [
        (torch.zeros(3), torch.zeros(3, dtype=torch.long), "`logits` (n, K)"),
        (torch.tensor([[0.0, math.nan]]), torch.tensor([0]), "`logits` to be finite"),
        (torch.zeros(2, 3), torch.tensor([0, 3]), "`target` in [0, 3)"),
    ],
)
def test_bad_input_names_the_argument(logits, target, message):
    with pytest.raises(ValueError) as e:
        fit_temperature(logits, target)
    assert message in str(e.value)
