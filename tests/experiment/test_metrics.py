"""Metrics against hand computations in plain Python/numpy float64, and the logit gap against the theory."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import labelsmooth
from labelsmooth.experiment.metrics import METRICS, adaptive_ece, brier_score, evaluate, logit_gap


def _random(n=500, K=7, seed=0, scale=3.0):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, K, generator=gen, dtype=torch.float64) * scale
    y = torch.randint(0, K, (n,), generator=gen)
    return z, y


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _hand_ece(p, y, n_bins=15):
    """Guo et al. 2017: equal-width bins (lo, hi] on the top-1 confidence."""
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    total = 0.0
    for m in range(n_bins):
        lo, hi = m / n_bins, (m + 1) / n_bins
        inside = [i for i in range(len(y)) if lo < conf[i] <= hi]
        if inside:
            acc = sum(pred[i] == y[i] for i in inside) / len(inside)
            avg = sum(conf[i] for i in inside) / len(inside)
            total += len(inside) / len(y) * abs(acc - avg)
    return total


def _hand_adaptive_ece(p, y, n_bins=15):
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    order = sorted(range(len(y)), key=lambda i: conf[i])
    n = len(y)
    total, begin = 0.0, 0
    for m in range(n_bins):
        size = n // n_bins + (1 if m < n % n_bins else 0)  # sizes differ by at most one
        idx = order[begin : begin + size]
        begin += size
        acc = sum(pred[i] == y[i] for i in idx) / size
        total += size / n * abs(acc - sum(conf[i] for i in idx) / size)
    return total


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_metric_matches_a_hand_computation(seed):
    z, y = _random(seed=seed)
    zn, yn = z.numpy(), y.numpy()
    p = _softmax(zn)
    m = evaluate(z, y)
    assert set(m) == set(METRICS) and all(isinstance(v, float) for v in m.values())
    assert m["accuracy"] == np.mean(p.argmax(1) == yn)
    assert m["nll"] == pytest.approx(-np.mean(np.log(p[np.arange(len(yn)), yn])), rel=1e-12)
    assert m["ece"] == pytest.approx(_hand_ece(p, yn), abs=1e-6)  # torchmetrics computes it in float32
    assert m["adaptive_ece"] == pytest.approx(_hand_adaptive_ece(p, yn), rel=1e-12)
    onehot = np.eye(z.shape[1])[yn]
    assert m["brier"] == pytest.approx(np.mean(np.sum((p - onehot) ** 2, axis=1)), rel=1e-12)
    assert m["confidence"] == pytest.approx(np.mean(p.max(1)), rel=1e-12)
    top = zn.max(1)
    assert m["logit_gap"] == pytest.approx(np.mean(top - (zn.sum(1) - top) / (zn.shape[1] - 1)), rel=1e-12)


def test_float32_logits_give_the_same_metrics():
    z, y = _random()
    m64, m32 = evaluate(z, y), evaluate(z.float(), y)
    for k in METRICS:
        assert m32[k] == pytest.approx(m64[k], rel=1e-5, abs=1e-6)


def test_perfectly_calibrated_bins_have_zero_ece():
    # four examples with confidence 0.75, three right: one bin, accuracy = confidence, ECE 0
    p = torch.tensor([[0.75, 0.25]] * 4, dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 1])
    assert evaluate(p.log(), y)["ece"] == pytest.approx(0.0, abs=1e-7)
    assert adaptive_ece(p, y, n_bins=1) == pytest.approx(0.0, abs=1e-12)
    # two with confidence 0.75, one right: accuracy 0.5, ECE |0.5 − 0.75| = 0.25
    assert evaluate(p[:2].log(), torch.tensor([0, 1]))["ece"] == pytest.approx(0.25, abs=1e-7)


def test_brier_bounds():
    y = torch.tensor([0, 1])
    right = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    assert brier_score(right, y) == 0.0
    assert brier_score(right.flip(0), y) == 2.0  # all mass on a wrong class


def test_adaptive_ece_with_fewer_examples_than_bins():
    p = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], dtype=torch.float64)
    y = torch.tensor([0, 0, 0])
    # one example per bin: |1 − 0.9| + |0 − 0.8| + |1 − 0.6|, each weighted 1/3
    assert adaptive_ece(p, y) == pytest.approx((0.1 + 0.8 + 0.4) / 3, rel=1e-12)


@pytest.mark.parametrize(("gamma", "K"), [(0.9, 10), (0.5, 10), (0.3, 4), (0.99, 100)])
def test_logit_gap_at_the_label_smoothing_minimiser_is_the_optimal_gap(gamma, K):
    """Logits with z_y − z_k = log(γ(K−1)/(1−γ)) minimise the smoothed loss (zero gradient), and the
    metric reads that gap back: it can be held against labelsmooth.optimal_logit_gap."""
    gap = math.log(gamma * (K - 1) / (1 - gamma))
    y = torch.arange(6) % K
    z = torch.randn(6, 1, dtype=torch.float64) + torch.nn.functional.one_hot(y, K).double() * gap
    z.requires_grad_(True)
    labelsmooth.cross_entropy(z, y, label_smoothing=1 - gamma, convention="others").backward()
    assert z.grad.abs().max() < 1e-12
    assert logit_gap(z.detach()) == pytest.approx(labelsmooth.optimal_logit_gap(gamma, K, "gamma"), rel=1e-12)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"Expected logits \(n, K\)"):
        evaluate(torch.zeros(3), torch.zeros(3, dtype=torch.long))
