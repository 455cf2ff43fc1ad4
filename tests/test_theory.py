"""decompose and optimal_logit_gap: the theory of docs/theory.md, executed."""

from __future__ import annotations

import math

import pytest
import torch

import labelsmooth as ls


@pytest.mark.parametrize("convention", ["uniform", "others"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_decomposition_total_equals_cross_entropy_to_1e_12(convention, reduction):
    z, y = torch.randn(32, 10, dtype=torch.float64) * 3, torch.randint(0, 10, (32,))
    d = ls.decompose(z, y, 0.2, convention=convention, reduction=reduction)
    ce = ls.cross_entropy(z, y, label_smoothing=0.2, convention=convention, reduction=reduction)
    torch.testing.assert_close(d.total, ce, rtol=0, atol=1e-12)
    torch.testing.assert_close(
        (1 - d.epsilon) * d.nll + d.epsilon * (d.kl + d.prior_entropy), d.total, rtol=0, atol=1e-12
    )
    n = {"mean": 1, "sum": 32, "none": 1}[reduction]
    assert torch.allclose(d.prior_entropy, torch.tensor(n * math.log(10), dtype=torch.float64), rtol=0, atol=1e-12)
    assert d.epsilon == pytest.approx(0.2 if convention == "uniform" else 0.2 * 10 / 9)


def test_kl_is_the_divergence_from_the_prior_and_non_negative():
    z, y = torch.randn(16, 6, dtype=torch.float64), torch.randint(0, 6, (16,))
    prior = torch.softmax(torch.randn(6, dtype=torch.float64), 0)
    d = ls.decompose(z, y, 0.1, prior=prior, reduction="none")
    logp = torch.log_softmax(z, 1)
    want = (prior * (prior.log() - logp)).sum(1)
    torch.testing.assert_close(d.kl, want)
    assert bool((d.kl >= 0).all())
    torch.testing.assert_close(d.nll, -logp.gather(1, y[:, None]).squeeze(1))


def test_others_with_a_prior_gives_a_per_example_epsilon_and_the_identity_holds_row_by_row():
    z, y = torch.randn(12, 5, dtype=torch.float64), torch.randint(0, 5, (12,))
    prior = torch.tensor([0.4, 0.3, 0.1, 0.1, 0.1], dtype=torch.float64)
    d = ls.decompose(z, y, 0.3, convention="others", prior=prior, reduction="none")
    torch.testing.assert_close(d.epsilon, 0.3 / (1 - prior[y]))
    ce = ls.cross_entropy(z, y, label_smoothing=0.3, convention="others", prior=prior, reduction="none")
    torch.testing.assert_close(d.total, ce, rtol=0, atol=1e-12)


def test_the_printed_minus_sign_would_reward_confidence():
    """Pereyra et al. §3.2 print −D_KL(u‖p). With it, sharper predictions would lower the loss further."""
    y = torch.tensor([0])
    eps = 0.1
    for scale in [1.0, 5.0, 50.0]:
        z = torch.tensor([[scale, 0.0, 0.0, 0.0]], dtype=torch.float64)
        d = ls.decompose(z, y, eps)
        assert d.total.item() == pytest.approx(((1 - eps) * d.nll + eps * (d.kl + d.prior_entropy)).item())

    # The correct loss has a finite minimiser; the minus-sign version decreases without bound.
    def wrong(scale):
        d = ls.decompose(torch.tensor([[scale, 0.0, 0.0, 0.0]], dtype=torch.float64), y, eps)
        return ((1 - eps) * d.nll - eps * d.kl).item()

    def right(scale):
        return ls.cross_entropy(
            torch.tensor([[scale, 0.0, 0.0, 0.0]], dtype=torch.float64), y, label_smoothing=eps
        ).item()

    assert wrong(100.0) < wrong(10.0) < wrong(5.0)
    assert right(100.0) > right(10.0)


@pytest.mark.parametrize("K,eps,gap", [(10, 0.1, 4.511), (1000, 0.1, 9.105)])
def test_optimal_gap_matches_the_anchors(K, eps, gap):
    assert ls.optimal_logit_gap(eps, K) == pytest.approx(gap, abs=5e-4)


@pytest.mark.parametrize("convention,value", [("uniform", 0.1), ("others", 0.1), ("gamma", 0.9), ("fairseq", 0.2)])
def test_optimal_gap_is_the_minimiser_of_the_loss(convention, value):
    """At logits with that gap, the gradient of the loss is zero (p = q)."""
    K = 7
    gap = ls.optimal_logit_gap(value, K, convention)
    eps_u = ls.convert_smoothing(value, K, convention, "uniform")
    z = torch.zeros(1, K, dtype=torch.float64)
    z[0, 2] = gap
    z.requires_grad_(True)
    ls.cross_entropy(z, torch.tensor([2]), label_smoothing=eps_u).backward()
    assert z.grad.abs().max().item() < 1e-12


def test_no_smoothing_has_no_finite_optimum():
    assert ls.optimal_logit_gap(0.0, 10) == math.inf
    assert ls.optimal_logit_gap(1.0, 10) == 0.0  # fully uniform target: equal logits
