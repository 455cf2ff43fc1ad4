"""labelsmooth.cross_entropy: exact against a float64 reference, and a drop-in for torch's."""

from __future__ import annotations

import itertools

import hypothesis.strategies as st
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given

import labelsmooth as ls
from tests import reference as ref

REDUCTIONS = ["mean", "sum", "none"]


def grad_of(loss_fn, z):
    z = z.detach().clone().requires_grad_(True)
    loss = loss_fn(z)
    (g,) = torch.autograd.grad(loss.sum(), z)
    return loss.detach(), g


# --- parity with torch: uniform convention, no prior ------------------------------------------------


SHAPES = [((5,), ()), ((7, 4), (7,)), ((3, 4, 5), (3, 5)), ((2, 3, 4, 2), (2, 4, 2)), ((0, 3), (0,))]


@pytest.mark.parametrize("shape,tshape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("use_weight", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.7, 1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_torch_with_class_indices(shape, tshape, reduction, use_weight, eps, dtype):
    C = shape[0] if len(shape) == 1 else shape[1]
    z = torch.randn(shape, dtype=dtype) * 3
    y = torch.randint(0, C, tshape)
    if y.dim() and y.numel():
        y.view(-1)[::3] = -100  # some ignored targets
    w = torch.rand(C, dtype=dtype) + 0.1 if use_weight else None
    ours = lambda z: ls.cross_entropy(z, y, w, reduction=reduction, label_smoothing=eps)  # noqa: E731
    theirs = lambda z: F.cross_entropy(z, y, w, reduction=reduction, label_smoothing=eps)  # noqa: E731
    a, ga = grad_of(ours, z)
    b, gb = grad_of(theirs, z)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a, b, equal_nan=True, **tol)
    torch.testing.assert_close(ga, gb, equal_nan=True, **tol)
    assert a.dtype == dtype and a.shape == b.shape


@pytest.mark.parametrize("shape", [(5,), (6, 4), (2, 4, 3)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("use_weight", [False, True])
def test_matches_torch_with_probability_targets(shape, reduction, use_weight):
    cdim = 0 if len(shape) == 1 else 1
    C = shape[cdim]
    z = torch.randn(shape, dtype=torch.float64)
    t = torch.softmax(torch.randn(shape, dtype=torch.float64), dim=cdim)
    w = torch.rand(C, dtype=torch.float64) if use_weight else None
    a, ga = grad_of(lambda z: ls.cross_entropy(z, t, w, reduction=reduction, label_smoothing=0.3), z)
    b, gb = grad_of(lambda z: F.cross_entropy(z, t, w, reduction=reduction, label_smoothing=0.3), z)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(ga, gb)


def test_module_is_a_drop_in_for_torch_module():
    z, y = torch.randn(6, 5), torch.randint(0, 5, (6,))
    w = torch.rand(5)
    ours = ls.CrossEntropyLoss(weight=w, label_smoothing=0.2, ignore_index=1)
    theirs = torch.nn.CrossEntropyLoss(weight=w, label_smoothing=0.2, ignore_index=1)
    torch.testing.assert_close(ours(z, y), theirs(z, y))


def test_all_targets_ignored_gives_nan_mean_like_torch():
    z, y = torch.randn(3, 4), torch.full((3,), -100)
    assert torch.isnan(ls.cross_entropy(z, y, label_smoothing=0.1)).item()
    assert torch.isnan(F.cross_entropy(z, y, label_smoothing=0.1)).item()
    assert ls.cross_entropy(z, y, label_smoothing=0.1, reduction="sum").item() == 0.0


# --- exact against the float64 reference: every convention, prior, weight ---------------------------


@st.composite
def problems(draw):
    N = draw(st.integers(1, 6))
    K = draw(st.integers(2, 7))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(N, K, generator=g, dtype=torch.float64) * draw(st.sampled_from([0.1, 1.0, 10.0]))
    y = torch.randint(0, K, (N,), generator=g)
    ignore = torch.rand(N, generator=g) < draw(st.sampled_from([0.0, 0.3]))
    y[ignore] = -100
    if bool(ignore.all()):
        y[0] = 0
    prior = None
    if draw(st.booleans()):
        prior = torch.rand(K, generator=g, dtype=torch.float64) + 0.05
        prior = prior / prior.sum()
    weight = torch.rand(K, generator=g, dtype=torch.float64) + 0.1 if draw(st.booleans()) else None
    return dict(
        z=z,
        y=y,
        prior=prior,
        weight=weight,
        eps=draw(st.sampled_from([0.0, 0.05, 0.3, 1.0])),
        convention=draw(st.sampled_from(["uniform", "others"])),
        reduction=draw(st.sampled_from(REDUCTIONS)),
    )


@given(problems())
def test_equals_the_float64_reference(p):
    got = ls.cross_entropy(
        p["z"], p["y"], p["weight"], reduction=p["reduction"], label_smoothing=p["eps"],
        convention=p["convention"], prior=p["prior"],
    )  # fmt: skip
    want = ref.cross_entropy(
        p["z"], p["y"], eps=p["eps"], convention=p["convention"], prior=p["prior"], weight=p["weight"],
        reduction=p["reduction"],
    )  # fmt: skip
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@given(problems())
def test_gradient_is_weighted_softmax_minus_weighted_target(p):
    """∂ℓ_i/∂z_i = (Σ_k w_k q_ik)·p_i − w ⊙ q_i, scaled by the reduction: checked against the reference's q."""
    z, y, K = p["z"], p["y"], p["z"].shape[1]
    w = p["weight"] if p["weight"] is not None else torch.ones(K, dtype=torch.float64)
    _, g = grad_of(
        lambda z: ls.cross_entropy(
            z, y, p["weight"], reduction="sum", label_smoothing=p["eps"], convention=p["convention"], prior=p["prior"]
        ),
        z,
    )
    pi = None if p["prior"] is None else p["prior"].tolist()
    for i in range(z.shape[0]):
        if y[i] == -100:
            assert torch.all(g[i] == 0)
            continue
        q = torch.tensor(ref.soft_target_row(int(y[i]), K, p["eps"], p["convention"], pi), dtype=torch.float64)
        want = (w * q).sum() * torch.softmax(z[i], 0) - w * q
        torch.testing.assert_close(g[i], want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("convention", ["uniform", "others"])
@pytest.mark.parametrize("with_prior", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck(convention, with_prior, reduction):
    z = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 3, -100, 4])
    prior = torch.tensor([0.1, 0.2, 0.3, 0.15, 0.25], dtype=torch.float64) if with_prior else None
    w = torch.tensor([1.0, 0.5, 2.0, 1.5, 0.7], dtype=torch.float64)
    fn = lambda z: ls.cross_entropy(  # noqa: E731
        z, y, w, reduction=reduction, label_smoothing=0.2, convention=convention, prior=prior
    )
    assert torch.autograd.gradcheck(fn, (z,))
    assert torch.autograd.gradgradcheck(fn, (z,))


def test_others_convention_keeps_exactly_one_minus_eps_on_the_true_class():
    # At the minimiser p = q, so q can be read off softmax of the optimal logits; here we check the
    # identity with torch's uniform convention: others(ε) == uniform(ε·K/(K−1)).
    K, eps = 7, 0.2
    z, y = torch.randn(9, K, dtype=torch.float64), torch.randint(0, K, (9,))
    others = ls.cross_entropy(z, y, label_smoothing=eps, convention="others")
    torch.testing.assert_close(others, F.cross_entropy(z, y, label_smoothing=eps * K / (K - 1)))


def test_uniform_prior_given_explicitly_equals_no_prior():
    z, y = torch.randn(5, 4, dtype=torch.float64), torch.randint(0, 4, (5,))
    for convention in ["uniform", "others"]:
        a = ls.cross_entropy(z, y, label_smoothing=0.3, convention=convention)
        b = ls.cross_entropy(z, y, label_smoothing=0.3, convention=convention, prior=torch.full((4,), 0.25))
        torch.testing.assert_close(a, b)


def test_no_smoothing_ignores_convention_and_prior():
    z, y = torch.randn(5, 4), torch.randint(0, 4, (5,))
    prior = torch.tensor([0.7, 0.1, 0.1, 0.1])
    for convention in ["uniform", "others"]:
        torch.testing.assert_close(ls.cross_entropy(z, y, convention=convention, prior=prior), F.cross_entropy(z, y))


# --- precision ---------------------------------------------------------------------------------------


def test_float16_large_vocabulary_is_finite_where_torch_overflows():
    K = 50_000
    g = torch.Generator().manual_seed(0)
    z = (torch.rand(8, K, generator=g) * 120 - 60).half().requires_grad_(True)
    y = torch.randint(0, K, (8,), generator=g)
    loss = ls.cross_entropy(z, y, label_smoothing=0.1)
    loss.backward()
    assert loss.dtype == torch.float16
    assert torch.isfinite(loss).item() and torch.isfinite(z.grad).all().item()
    want = F.cross_entropy(z.detach().double(), y, label_smoothing=0.1)
    torch.testing.assert_close(loss.double(), want, rtol=2e-3, atol=0)
    assert not torch.isfinite(F.cross_entropy(z.detach(), y, label_smoothing=0.1)).item()  # torch's own


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_matches_float64_within_tolerance(dtype):
    z = torch.randn(16, 11) * 4
    y = torch.randint(0, 11, (16,))
    got = ls.cross_entropy(z.to(dtype), y, label_smoothing=0.1, convention="others")
    want = ls.cross_entropy(z.to(dtype).double(), y, label_smoothing=0.1, convention="others")
    tol = 1e-3 if dtype == torch.float16 else 8e-3  # the result's own rounding
    torch.testing.assert_close(got.double(), want, rtol=tol, atol=0)


def test_all_combinations_of_options_run_on_nd_inputs():
    z = torch.randn(2, 4, 3, 2, dtype=torch.float64)
    y = torch.randint(0, 4, (2, 3, 2))
    prior = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    for convention, reduction in itertools.product(["uniform", "others"], REDUCTIONS):
        got = ls.cross_entropy(z, y, label_smoothing=0.2, convention=convention, prior=prior, reduction=reduction)
        flat = ref.cross_entropy(
            z.movedim(1, -1).reshape(-1, 4), y.reshape(-1), eps=0.2, convention=convention, prior=prior,
            reduction=reduction,
        )  # fmt: skip
        torch.testing.assert_close(got, flat.reshape(2, 3, 2) if reduction == "none" else flat)
