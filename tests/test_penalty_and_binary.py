"""The confidence penalty (Pereyra et al. 2017) and binary label smoothing."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import labelsmooth as ls
from tests import reference as ref


def test_penalty_is_minus_beta_times_entropy():
    z = torch.randn(5, 4, dtype=torch.float64)
    torch.testing.assert_close(ls.confidence_penalty(z, 0.7, reduction="none"), -0.7 * ref.entropy(z))
    torch.testing.assert_close(ls.confidence_penalty(z, 0.7), (-0.7 * ref.entropy(z)).mean())
    torch.testing.assert_close(ls.confidence_penalty(z, 0.7, reduction="sum"), (-0.7 * ref.entropy(z)).sum())


def test_hinge_form_only_penalises_entropy_below_the_threshold():
    z = torch.tensor([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]], dtype=torch.float64)
    h = ref.entropy(z)
    got = ls.confidence_penalty(z, 2.0, threshold=1.0, reduction="none")
    torch.testing.assert_close(got, 2.0 * torch.clamp(1.0 - h, min=0))
    assert got[0].item() == 0.0 and got[1].item() > 0


def test_minimising_the_penalty_raises_the_entropy():
    """The sign netcal's PyTorch version gets backwards: gradient descent must make p less confident."""
    z = torch.tensor([[3.0, 1.0, -2.0, 0.5]], dtype=torch.float64, requires_grad=True)
    before = ref.entropy(z.detach()).item()
    opt = torch.optim.SGD([z], lr=0.5)
    for _ in range(20):
        opt.zero_grad()
        ls.confidence_penalty(z, 1.0).backward()
        opt.step()
    after = ref.entropy(z.detach()).item()
    assert after > before + 0.1
    assert after <= math.log(4) + 1e-12


def test_penalty_is_the_reversed_kl_up_to_a_constant():
    """−H(p) = D_KL(p‖u) − log K."""
    z = torch.randn(6, 5, dtype=torch.float64)
    p = torch.softmax(z, 1)
    kl_p_u = (p * (p.log() - math.log(1 / 5))).sum(1)
    torch.testing.assert_close(ls.confidence_penalty(z, 1.0, reduction="none"), kl_p_u - math.log(5))


def test_penalty_on_nd_inputs_uses_the_class_dimension():
    z = torch.randn(2, 4, 3, dtype=torch.float64)
    got = ls.confidence_penalty(z, 1.0, reduction="none")
    assert got.shape == (2, 3)
    torch.testing.assert_close(got, -ref.entropy(z.movedim(1, -1).reshape(-1, 4)).reshape(2, 3))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_confidence_penalty_loss_is_cross_entropy_plus_penalty_on_kept_rows(reduction):
    z = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, -100, 3, 2])
    w = torch.tensor([1.0, 2.0, 0.5, 1.0], dtype=torch.float64)
    got = ls.ConfidencePenaltyLoss(beta=0.3, weight=w, reduction=reduction)(z, y)
    keep = y != -100
    pen = -0.3 * ref.entropy(z.detach()) * keep
    ce = F.cross_entropy(z, y, w, reduction=reduction)
    want = {"none": ce + pen, "sum": ce + pen.sum(), "mean": ce + pen.sum() / keep.sum()}[reduction]
    torch.testing.assert_close(got, want)
    assert torch.autograd.gradcheck(
        lambda z: ls.ConfidencePenaltyLoss(beta=0.3, weight=w, reduction=reduction)(z, y).sum(), (z,)
    )


@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
def test_binary_targets_move_towards_one_half(eps):
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 2, (6, 3)).double()
    pw = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    got = ls.binary_cross_entropy_with_logits(x, t, pos_weight=pw, label_smoothing=eps, reduction="none")
    s = t * (1 - eps) + eps / 2
    sig = torch.sigmoid(x)
    want = -(pw * s * sig.log() + (1 - s) * (1 - sig).log())
    torch.testing.assert_close(got, want)
    (g,) = torch.autograd.grad(got.sum(), x)
    # ∂/∂x = (p_w s + 1 − s)·σ(x) − p_w s
    torch.testing.assert_close(g, (pw * s + 1 - s) * sig.detach() - pw * s)


def test_binary_module_matches_function():
    x, t = torch.randn(4, 2), torch.rand(4, 2)
    torch.testing.assert_close(
        ls.BCEWithLogitsLoss(label_smoothing=0.2)(x, t), ls.binary_cross_entropy_with_logits(x, t, label_smoothing=0.2)
    )
