"""z-loss and logit softcapping in the Triton kernel, run on CPU tensors in Triton's interpreter.

The kernel's per-row losses, z-loss parts and gradients, and fused_cross_entropy(backend="triton")
end to end, against the float64 oracle of tests/reference.py (written from docs/theory.md §9):
ℓ_i = −Σ_k w_k q_ik log softmax(x_i)_k + λ·lse(x_i)² with x = c·tanh(z/c), and its gradient
((m_i + 2λ·L_i)·p_i − w ⊙ q_i) ⊙ (1 − tanh²(z_i/c)). Shapes stay tiny: the interpreter runs in NumPy.
"""

from __future__ import annotations

import pytest
import torch

import labelsmooth as ls
from labelsmooth.kernels import triton_backend
from labelsmooth.targets import index_target_coefficients, probability_target_coefficients
from tests import reference as R
from tests._triton import require_interpreter

require_interpreter(__file__)
pytestmark = pytest.mark.usefixtures("triton_interpreter")


IGNORE = -100
M, K = 7, 37  # 37 classes: three tiles of 16, the last one partial
TERMS = [(0.03, None), (0.0, 2.5), (0.05, 3.0)]


def case(seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(M, K, generator=g, dtype=torch.float64) * 4
    y = torch.randint(0, K, (M,), generator=g)
    y[1::3] = IGNORE
    w = torch.rand(K, generator=g, dtype=torch.float64) + 0.5
    prior = torch.rand(K, generator=g, dtype=torch.float64) + 0.1
    return z.to(dtype), y, w.to(dtype), (prior / prior.sum()).to(dtype)


def run_kernel(z, y, eps, *, z_loss, softcap, convention="uniform", prior=None, weight=None, scale=None,
               block_size=16, inplace=False):  # fmt: skip
    """(row losses, gradient, z-loss parts) of the kernel, per row, with each row's gradient factor ``scale``."""
    acc = torch.promote_types(z.dtype, torch.float32)
    c = index_target_coefficients(
        y, K, eps, convention=convention, prior=prior, weight=weight, ignore_index=IGNORE, dtype=acc
    )
    scale = torch.ones(M, dtype=acc) if scale is None else scale.to(acc)
    z_rows = torch.full((M,), -1.0, dtype=acc)  # every entry must be written
    row, grad = triton_backend.loss_and_grad(
        z, c, scale, inplace=inplace, block_size=block_size, z_loss=z_loss, softcap=softcap, z_rows=z_rows
    )
    return row, grad, z_rows


@pytest.mark.parametrize("convention", ["uniform", "others"])
@pytest.mark.parametrize("use_prior, use_weight", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("z_loss, softcap", TERMS)
def test_kernel_matches_the_float64_oracle(convention, use_prior, use_weight, z_loss, softcap):
    z, y, w, prior = case(0)
    opts = dict(convention=convention, prior=prior if use_prior else None, weight=w if use_weight else None)
    upstream = torch.linspace(0.5, 2.0, M, dtype=torch.float64)  # each row's gradient factor
    row, grad, z_rows = run_kernel(z, y, 0.2, z_loss=z_loss, softcap=softcap, scale=upstream, **opts)
    ref_kw = dict(eps=0.2, ignore_index=IGNORE, z_loss=z_loss, softcap=softcap, **opts)
    expected = R.cross_entropy(z, y, reduction="none", **ref_kw)
    torch.testing.assert_close(row, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        grad, R.cross_entropy_grad(z, y, reduction="none", upstream=upstream, **ref_kw), rtol=1e-12, atol=1e-13
    )
    plain = R.cross_entropy(z, y, reduction="none", **{**ref_kw, "z_loss": 0.0})
    torch.testing.assert_close(z_rows, expected - plain, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("convention", ["uniform", "others"])
@pytest.mark.parametrize("z_loss, softcap", TERMS)
def test_float32_scalar_kernel_matches_the_oracle(convention, z_loss, softcap):
    """No weights, no prior, float32: the kernel derives a, b, m, v and λ from numbers and the raw target."""
    z, y, _, _ = case(1, torch.float32)
    assert index_target_coefficients(y, K, 0.2, convention=convention, ignore_index=IGNORE).row_scalars is not None
    row, grad, z_rows = run_kernel(z, y, 0.2, z_loss=z_loss, softcap=softcap, convention=convention, block_size=None)
    ref_kw = dict(eps=0.2, convention=convention, ignore_index=IGNORE, z_loss=z_loss, softcap=softcap)
    expected = R.cross_entropy(z, y, reduction="none", **ref_kw)
    assert row.dtype == grad.dtype == z_rows.dtype == torch.float32
    torch.testing.assert_close(row.double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad.double(), R.cross_entropy_grad(z, y, reduction="sum", **ref_kw), rtol=1e-5,
                               atol=1e-6)  # fmt: skip
    plain = R.cross_entropy(z, y, reduction="none", **{**ref_kw, "z_loss": 0.0})
    torch.testing.assert_close(z_rows.double(), expected - plain, rtol=1e-5, atol=1e-6)
    assert bool((z_rows[y == IGNORE] == 0).all()) and bool((grad[y == IGNORE] == 0).all())


def test_without_the_terms_the_plain_kernel_runs_and_a_far_cap_changes_almost_nothing():
    z, y, w, _ = case(2)
    row, grad, z_rows = run_kernel(z, y, 0.1, z_loss=0.0, softcap=None, weight=w)
    assert bool((z_rows == 0.0).all())  # the z-loss parts of no z-loss
    c = index_target_coefficients(y, K, 0.1, weight=w, ignore_index=IGNORE, dtype=torch.float64)
    plain_row, plain_grad = triton_backend.loss_and_grad(z, c, torch.ones(M, dtype=torch.float64), inplace=False,
                                                         block_size=16)  # fmt: skip
    assert torch.equal(row, plain_row) and torch.equal(grad, plain_grad)  # the terms off: the plain kernel
    # a cap far above every logit changes almost nothing: c·tanh(z/c) = z − z³/(3c²) + ...
    capped, capped_grad, _ = run_kernel(z, y, 0.1, z_loss=0.0, softcap=1e4, weight=w)
    torch.testing.assert_close(capped, plain_row, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(capped_grad, plain_grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_is_computed_in_float32(dtype, inplace):
    """The gradient is rounded once to the logits' dtype (Triton's interpreter truncates to bfloat16: 2u)."""
    z, y, w, prior = case(3)
    z = z.to(dtype)
    kept = z.clone()
    row, grad, z_rows = run_kernel(z, y, 0.1, z_loss=0.02, softcap=4.0, convention="others", prior=prior.float(),
                                   weight=w.float(), inplace=inplace)  # fmt: skip
    assert (grad is z) == inplace and grad.dtype == dtype and row.dtype == torch.float32
    exact = kept.double()
    ref_kw = dict(eps=0.1, convention="others", prior=prior, weight=w, ignore_index=IGNORE, z_loss=0.02, softcap=4.0)
    torch.testing.assert_close(row.double(), R.cross_entropy(exact, y, reduction="none", **ref_kw), rtol=1e-5,
                               atol=1e-5)  # fmt: skip
    u = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}[dtype]
    torch.testing.assert_close(grad.double(), R.cross_entropy_grad(exact, y, reduction="sum", **ref_kw),
                               rtol=2 * u, atol=1e-6)  # fmt: skip


# NumPy evaluates both branches of tl.where: 0·(-inf) in the dropped one warns, its NaN never reaches a result
@pytest.mark.filterwarnings("ignore:invalid value encountered in multiply:RuntimeWarning")
def test_masked_and_huge_logits_are_capped_finite():
    """-inf (masked) classes become −c, ±1e4 become ±c: finite losses, exact zeros in the chain rule."""
    z = torch.randn(3, 40, dtype=torch.float64)
    z[0, 35] = 1e4
    z[1, :16] = float("-inf")
    z[2, ::2] = -1e4
    y = torch.tensor([35, 20, 1])
    c = index_target_coefficients(y, 40, 0.1, dtype=torch.float64)
    row, grad = triton_backend.loss_and_grad(
        z, c, torch.ones(3, dtype=torch.float64), inplace=False, block_size=16, z_loss=0.01, softcap=5.0
    )
    kw = dict(eps=0.1, z_loss=0.01, softcap=5.0)
    torch.testing.assert_close(row, R.cross_entropy(z, y, reduction="none", **kw), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, R.cross_entropy_grad(z, y, reduction="sum", **kw), rtol=1e-12, atol=1e-13)
    assert bool((grad[1, :16] == 0).all()) and bool(torch.isfinite(row).all())


def test_probability_targets():
    g = torch.Generator().manual_seed(4)
    z = torch.randn(5, K, generator=g, dtype=torch.float64) * 3
    q = torch.softmax(torch.randn(5, K, generator=g, dtype=torch.float64), 1)
    c = probability_target_coefficients(q, 0.1, dtype=torch.float64)
    z_rows = torch.zeros(5, dtype=torch.float64)
    row, grad = triton_backend.loss_and_grad(
        z, c, torch.ones(5, dtype=torch.float64), inplace=False, block_size=16, z_loss=0.1, softcap=2.0, z_rows=z_rows
    )
    x = 2.0 * torch.tanh(z / 2.0)
    lse = torch.logsumexp(x, 1)
    qs = 0.9 * q + 0.1 / K
    torch.testing.assert_close(row, -(qs * torch.log_softmax(x, 1)).sum(1) + 0.1 * lse.square(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(z_rows, 0.1 * lse.square(), rtol=1e-12, atol=1e-12)
    p = torch.softmax(x, 1)
    expected = ((1 + 0.2 * lse).unsqueeze(1) * p - qs) * (1 - torch.tanh(z / 2.0).square())
    torch.testing.assert_close(grad, expected, rtol=1e-11, atol=1e-13)


# --- end to end: labelsmooth.fused_cross_entropy(backend="triton") -------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("inplace", [False, True])
def test_fused_cross_entropy_with_the_triton_backend(reduction, inplace):
    z, y, w, prior = case(5)
    kw = dict(weight=w, prior=prior, reduction=reduction, label_smoothing=0.2, convention="others")
    upstream = torch.linspace(0.5, 2.0, M, dtype=torch.float64) if reduction == "none" else None
    leaf = z.clone().requires_grad_()
    loss, z_part = ls.fused_cross_entropy(
        leaf * 1.0, y, inplace=inplace, backend="triton", z_loss=0.05, softcap=3.0, return_z_loss=True, **kw
    )
    loss.backward(torch.ones_like(loss) if upstream is None else upstream)
    ref_kw = dict(eps=0.2, weight=w, prior=prior, convention="others", reduction=reduction, softcap=3.0)
    expected = R.cross_entropy(z, y, z_loss=0.05, **ref_kw)
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(leaf.grad, R.cross_entropy_grad(z, y, z_loss=0.05, upstream=upstream, **ref_kw),
                               rtol=1e-11, atol=1e-13)  # fmt: skip
    torch.testing.assert_close(z_part, expected - R.cross_entropy(z, y, **ref_kw), rtol=1e-10, atol=1e-12)


def test_fused_triton_equals_the_torch_backend_in_float32():
    z, y, w, _ = case(6, torch.float32)
    out = {}
    for backend in ("torch", "triton"):
        leaf = z.clone().requires_grad_()
        loss = ls.fused_cross_entropy(leaf, y, weight=w, label_smoothing=0.1, z_loss=1e-3, softcap=5.0,
                                      backend=backend)  # fmt: skip
        loss.backward()
        out[backend] = (loss.detach(), leaf.grad)
    torch.testing.assert_close(out["triton"][0], out["torch"][0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out["triton"][1], out["torch"][1], rtol=1e-5, atol=1e-7)


def test_fused_triton_mean_over_only_ignored_targets_is_nan_with_zero_gradient():
    z, _, _, _ = case(7)
    leaf = z.clone().requires_grad_()
    loss = ls.fused_cross_entropy(leaf, torch.full((M,), IGNORE), backend="triton", z_loss=0.1, softcap=3.0)
    loss.backward()
    assert torch.isnan(loss) and bool((leaf.grad == 0).all())


def test_z_rows_of_the_wrong_dtype_are_refused():
    z, y, _, _ = case(8)
    c = index_target_coefficients(y, K, 0.1, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"`z_rows` to be a contiguous \(7,\) tensor of dtype torch.float64"):
        triton_backend.loss_and_grad(z, c, None, inplace=False, z_loss=0.1, z_rows=torch.zeros(7))
