"""The Triton kernels (labelsmooth.kernels.triton_backend), run on CPU tensors in Triton's interpreter.

Each case checks the kernels' per-row loss and gradient against an obvious float64 reference written from
the formulas (tests/reference.py for the loss; (Σ_k w_k q_k)·softmax(z) − w ⊙ q for the gradient, times
the row's gradient factor) and against labelsmooth.cross_entropy through autograd. Shapes stay small: the
interpreter executes every program in NumPy. CUDA-only tests skip without a GPU.
"""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

import labelsmooth as ls
from labelsmooth.kernels import triton_backend
from labelsmooth.targets import index_target_coefficients
from tests import reference as ref
from tests._triton import require_interpreter

require_interpreter(__file__)
pytestmark = pytest.mark.usefixtures("triton_interpreter")


REDUCTIONS = ["mean", "sum", "none"]
IGNORE = -100
# unit roundoff u of the output dtype: the kernels compute in float32 and round the gradient once
UNIT_ROUNDOFF = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}


def skewed_prior(K: int, dtype=torch.float64) -> torch.Tensor:
    p = torch.arange(1, K + 1, dtype=dtype)
    return p / p.sum()


def problem(M: int, K: int, dtype=torch.float32, *, ignored=True):
    z = (torch.randn(M, K, dtype=torch.float64) * 3).to(dtype)
    y = torch.randint(0, K, (M,))
    if ignored:
        y[1::3] = IGNORE
    return z, y


def kernel(z, y, eps, *, convention="uniform", prior=None, weight=None, reduction="mean", upstream=None,
           inplace=False, block_size=None):  # fmt: skip
    """The kernels with a reduction expressed as the per-row gradient factor: (loss, grad, row_loss)."""
    K = z.shape[1]
    acc = torch.promote_types(z.dtype, torch.float32)
    c = index_target_coefficients(
        y, K, eps, convention=convention, prior=prior, weight=weight, ignore_index=IGNORE, dtype=acc
    )
    if reduction == "mean":
        scale = torch.full_like(c.row_weight, 1.0 / c.row_weight.sum().item())
    elif reduction == "sum":
        scale = torch.ones_like(c.row_weight)
    else:
        scale = upstream.to(acc)
    row_loss, grad = triton_backend.loss_and_grad(z, c, scale, inplace=inplace, block_size=block_size)
    loss = row_loss if reduction == "none" else (row_loss * scale).sum() if reduction == "mean" else row_loss.sum()
    return loss, grad, row_loss


def reference_grad(z, y, eps, *, convention="uniform", prior=None, weight=None, scale=None):
    """Float64 gradient of Σ_i s_i ℓ_i from the formula: row i is s_i·((Σ_k w_k q_k)·p − w ⊙ q)."""
    M, K = z.shape
    w = [1.0] * K if weight is None else weight.double().tolist()
    pi = None if prior is None else prior.double().tolist()
    rows = []
    for i, (zi, yi) in enumerate(zip(z.double().tolist(), y.tolist())):
        if yi == IGNORE:
            rows.append([0.0] * K)
            continue
        q = ref.soft_target_row(yi, K, eps, convention, pi)
        wq = [w[k] * q[k] for k in range(K)]
        p = [math.exp(v) for v in ref.log_softmax_row(zi)]
        s = 1.0 if scale is None else float(scale[i])
        rows.append([s * (sum(wq) * p[k] - wq[k]) for k in range(K)])
    return torch.tensor(rows, dtype=torch.float64)


def autograd_reference(z, y, eps, *, convention, prior, weight, reduction, upstream):
    z = z.detach().clone().requires_grad_(True)
    loss = ls.cross_entropy(z, y, weight, IGNORE, reduction, eps, convention=convention, prior=prior)
    (g,) = torch.autograd.grad(loss, z, grad_outputs=upstream if reduction == "none" else None)
    return loss.detach(), g


# --- every convention, prior, weight and reduction ----------------------------------------------------


@pytest.mark.parametrize("convention", ["uniform", "others"])
@pytest.mark.parametrize("use_prior", [False, True])
@pytest.mark.parametrize("use_weight", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_matches_float64_reference_and_cross_entropy(convention, use_prior, use_weight, reduction):
    M, K, eps = 7, 37, 0.2
    z, y = problem(M, K, torch.float64)
    prior = skewed_prior(K) if use_prior else None
    weight = torch.rand(K, dtype=torch.float64) + 0.5 if use_weight else None
    upstream = torch.rand(M, dtype=torch.float64)
    opts = dict(convention=convention, prior=prior, weight=weight)
    loss, grad, _ = kernel(z, y, eps, reduction=reduction, upstream=upstream, block_size=16, **opts)

    # float64 logits are computed in float64: the hand-written reference agrees to rounding
    expected = ref.cross_entropy(z, y, eps=eps, ignore_index=IGNORE, reduction=reduction, **opts)
    # the reduction as each row's gradient factor; "mean" divides by Σ w_{y_i} over the kept rows
    w = torch.ones(K, dtype=torch.float64) if weight is None else weight
    mean_scale = 1.0 / sum(w[t].item() for t in y.tolist() if t != IGNORE)
    scale = {"mean": torch.full((M,), mean_scale, dtype=torch.float64), "sum": None, "none": upstream}[reduction]
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, reference_grad(z, y, eps, scale=scale, **opts), rtol=1e-12, atol=1e-12)

    # float32 logits, default tile (one here): the same numbers as labelsmooth.cross_entropy with autograd
    z32 = z.float()
    loss32, grad32, row32 = kernel(z32, y, eps, reduction=reduction, upstream=upstream.float(), **opts)
    ref_loss, ref_grad = autograd_reference(
        z32, y, eps, reduction=reduction, upstream=upstream.float(), **{k: _f32(v) for k, v in opts.items()}
    )
    assert row32.dtype == torch.float32 and grad32.dtype == torch.float32
    torch.testing.assert_close(loss32, ref_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad32, ref_grad, rtol=1e-5, atol=1e-7)


def _f32(x):
    return x.float() if isinstance(x, torch.Tensor) else x


@pytest.mark.parametrize("eps", [0.0, 1.0])
@pytest.mark.parametrize("convention", ["uniform", "others"])
def test_smoothing_at_the_ends_of_its_range(eps, convention):
    z, y = problem(5, 11, torch.float64)
    loss, grad, _ = kernel(z, y, eps, convention=convention, reduction="sum")
    torch.testing.assert_close(loss, ref.cross_entropy(z, y, eps=eps, convention=convention, reduction="sum"))
    torch.testing.assert_close(grad, reference_grad(z, y, eps, convention=convention))


# --- tiles -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "K,block_size",
    [(5, 16), (16, 16), (37, 16), (100, 32), (100, 64), (129, None)],
    ids=["K<block", "K=block", "37/16", "100/32", "100/64", "default"],
)
def test_tiles_that_do_not_divide_the_classes(K, block_size):
    z, y = problem(4, K, torch.float64)
    prior = skewed_prior(K)
    loss, grad, _ = kernel(z, y, 0.3, convention="others", prior=prior, reduction="sum", block_size=block_size)
    torch.testing.assert_close(
        loss, ref.cross_entropy(z, y, eps=0.3, convention="others", prior=prior, reduction="sum")
    )
    torch.testing.assert_close(grad, reference_grad(z, y, 0.3, convention="others", prior=prior))


@pytest.mark.slow
@settings(max_examples=20, deadline=None)
@given(
    M=st.integers(1, 6),
    K=st.integers(2, 70),
    block_size=st.sampled_from([16, 32, 64]),
    eps=st.floats(0.0, 1.0),
    convention=st.sampled_from(["uniform", "others"]),
    seed=st.integers(0, 2**16),
)
def test_any_shape_and_tile_matches_the_float64_reference(M, K, block_size, eps, convention, seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(M, K, generator=g, dtype=torch.float64) * 4
    y = torch.randint(0, K, (M,), generator=g)
    y[torch.rand(M, generator=g) < 0.3] = IGNORE
    weight = torch.rand(K, generator=g, dtype=torch.float64) + 0.1
    loss, grad, _ = kernel(z, y, eps, convention=convention, weight=weight, reduction="sum", block_size=block_size)
    expected = ref.cross_entropy(z, y, eps=eps, convention=convention, weight=weight, reduction="sum")
    torch.testing.assert_close(loss, expected, rtol=1e-11, atol=1e-11)
    torch.testing.assert_close(grad, reference_grad(z, y, eps, convention=convention, weight=weight))


# NumPy evaluates both branches of tl.where: 0·(-inf) in the dropped one warns, its NaN never reaches a result
@pytest.mark.filterwarnings("ignore:invalid value encountered in multiply:RuntimeWarning")
def test_online_softmax_survives_large_and_masked_logits():
    """Logits of ±1e4 and -inf (masked classes) across tiles: no overflow, exact zeros, torch's values."""
    z = torch.randn(3, 40, dtype=torch.float64)
    z[0, 35] = 1e4  # the maximum arrives in the last tile
    z[1, :16] = float("-inf")  # a whole first tile masked
    z[2, ::2] = -1e4
    y = torch.tensor([35, 20, 1])
    loss, grad, _ = kernel(z, y, 0.0, reduction="none", upstream=torch.ones(3), block_size=16)
    ref_loss, ref_grad = autograd_reference(
        z,
        y,
        0.0,
        convention="uniform",
        prior=None,
        weight=None,
        reduction="none",
        upstream=torch.ones(3, dtype=z.dtype),
    )
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(grad, ref_grad)
    assert bool((grad[1, :16] == 0).all())


def test_ignored_rows_give_exact_zeros():
    z, y = problem(4, 20, torch.float32, ignored=False)
    y[:] = IGNORE
    row_loss, grad = triton_backend.loss_and_grad(
        z, index_target_coefficients(y, 20, 0.1, ignore_index=IGNORE), torch.ones(4), inplace=False
    )
    assert bool((row_loss == 0).all()) and bool((grad == 0).all())


# --- in place, low precision -----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_inplace_writes_the_gradient_into_the_logits(dtype):
    z, y = problem(6, 37, dtype)
    w = torch.rand(37) + 0.5
    kept = z.clone()
    _, out_of_place, _ = kernel(z, y, 0.1, weight=w, reduction="mean", block_size=16)
    assert torch.equal(z, kept)  # out of place: the logits are untouched
    _, in_place, _ = kernel(z, y, 0.1, weight=w, reduction="mean", block_size=16, inplace=True)
    assert in_place is z and in_place.dtype == dtype  # the logits' storage now holds the gradient
    assert torch.equal(in_place, out_of_place)  # bit-identical either way


def test_rows_of_a_wider_buffer_in_place():
    """Logits that are a column slice of a wider buffer (row stride > K): only the slice is written."""
    wide = torch.randn(5, 40, dtype=torch.float64)
    kept = wide.clone()
    z, y = wide[:, :37], torch.tensor([0, 36, IGNORE, 5, 17])
    _, grad, _ = kernel(z, y, 0.1, reduction="sum", block_size=16, inplace=True)
    assert grad.data_ptr() == wide.data_ptr()
    torch.testing.assert_close(wide[:, :37], reference_grad(kept[:, :37], y, 0.1))
    assert torch.equal(wide[:, 37:], kept[:, 37:])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("convention", ["uniform", "others"])
def test_half_precision_is_computed_in_float32(dtype, convention):
    """Tolerances: row losses are float32 sums (rtol 1e-5); the gradient is rounded once to the logits'
    dtype: relative error u (2^-8 for bfloat16, 2^-11 for float16) when rounding to nearest as compiled
    Triton does, 2u for bfloat16 in Triton's interpreter, which truncates float32 to bfloat16: rtol 2u."""
    z, y = problem(6, 37, dtype)
    prior, weight = skewed_prior(37), torch.rand(37, dtype=torch.float64) + 0.5
    opts = dict(convention=convention, prior=prior, weight=weight)
    loss, grad, row_loss = kernel(z, y, 0.1, reduction="sum", block_size=16, **opts)
    assert row_loss.dtype == torch.float32 and grad.dtype == dtype
    exact = z.double()  # the reference sees exactly the half-precision values
    torch.testing.assert_close(
        loss.double(), ref.cross_entropy(exact, y, eps=0.1, ignore_index=IGNORE, reduction="sum", **opts),
        rtol=1e-5, atol=1e-6,
    )  # fmt: skip
    u = UNIT_ROUNDOFF[dtype]
    torch.testing.assert_close(grad.double(), reference_grad(exact, y, 0.1, **opts), rtol=2 * u, atol=1e-6)


# --- errors ------------------------------------------------------------------------------------------


def test_cpu_tensors_without_the_interpreter_are_refused(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")
    z, y = problem(2, 5)
    with pytest.raises(RuntimeError, match="CUDA device.*TRITON_INTERPRET=1"):
        triton_backend.loss_and_grad(z, index_target_coefficients(y, 5, 0.1), torch.ones(2), inplace=False)


@pytest.mark.parametrize("block_size,error", [(24, ValueError), (8, ValueError), (16.0, TypeError)])
def test_block_size_must_be_a_power_of_two(block_size, error):
    z, y = problem(2, 5)
    with pytest.raises(error, match="`block_size` to be a power of two >= 16"):
        triton_backend.loss_and_grad(
            z, index_target_coefficients(y, 5, 0.1), torch.ones(2), inplace=False, block_size=block_size
        )


def test_logits_strided_along_the_classes_are_refused():
    z, y = problem(3, 5)
    with pytest.raises(ValueError, match="unit stride along the classes"):
        triton_backend.loss_and_grad(z.t().contiguous().t(), index_target_coefficients(y, 5, 0.1), torch.ones(3),
                                     inplace=False)  # fmt: skip


def test_mismatched_coefficients_are_refused():
    z, y = problem(3, 5)
    with pytest.raises(ValueError, match="describe the 3 rows and 5 classes"):
        triton_backend.loss_and_grad(z, index_target_coefficients(y[:2], 5, 0.1), torch.ones(3), inplace=False)


# --- end to end: labelsmooth.fused_cross_entropy(backend=...) ---------------------------------------------


@pytest.mark.parametrize("convention,use_prior,use_weight", [("uniform", False, False), ("others", True, True)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("inplace", [False, True])
def test_fused_cross_entropy_with_the_triton_backend(convention, use_prior, use_weight, reduction, inplace):
    z, y = problem(6, 37, torch.float64)
    opts = dict(
        weight=torch.rand(37, dtype=torch.float64) + 0.5 if use_weight else None,
        ignore_index=IGNORE, reduction=reduction, label_smoothing=0.2, convention=convention,
        prior=skewed_prior(37) if use_prior else None,
    )  # fmt: skip
    leaf = z.clone().requires_grad_(True)
    logits = leaf * 1.0  # an activation: inplace=True overwrites it with the gradient
    loss = ls.fused_cross_entropy(logits, y, inplace=inplace, backend="triton", chunk_size=4, **opts)
    (grad,) = torch.autograd.grad(loss.sum(), leaf)
    expected, expected_grad = autograd_reference(
        z, y, 0.2, convention=convention, prior=opts["prior"], weight=opts["weight"], reduction=reduction,
        upstream=torch.ones(6, dtype=torch.float64),
    )  # fmt: skip
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-12)


def test_auto_backend_takes_torch_for_cpu_tensors_even_under_the_interpreter():
    from labelsmooth.kernels import select_backend, torch_backend

    assert select_backend("auto", torch.zeros(2, 3)) is torch_backend
    assert select_backend("triton", torch.zeros(2, 3)) is triton_backend
    z, y = problem(4, 9)
    auto = ls.fused_cross_entropy(z, y, label_smoothing=0.1, backend="auto")
    torch.testing.assert_close(auto, ls.cross_entropy(z, y, ignore_index=IGNORE, label_smoothing=0.1))


# --- the prepared GPU script (benchmarks/gpu_check.py) --------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
GPU_CHECK = ROOT / "benchmarks" / "gpu_check.py"


def run_gpu_check(*args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # compiled kernels
    environ.update(PYTHONPATH=str(ROOT / "src"), **env)
    return subprocess.run(
        [sys.executable, str(GPU_CHECK), *args], capture_output=True, text=True, env=environ, timeout=600
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the path taken without a CUDA device")
def test_gpu_script_exits_at_once_without_a_gpu(tmp_path):
    out = tmp_path / "report.md"
    result = run_gpu_check("--out", str(out))
    assert result.returncode == 2, result.stderr
    assert "no CUDA device" in result.stderr and "nothing was checked or measured" in result.stderr
    assert not out.exists()


@pytest.mark.slow
def test_gpu_script_checks_pass_in_the_interpreter():
    """The script's correctness checks, run on CPU tensors at a small shape: its own code is exercised."""
    spec = importlib.util.spec_from_file_location("gpu_check", GPU_CHECK)
    gpu_check = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = gpu_check  # dataclasses look their module up there
    try:
        spec.loader.exec_module(gpu_check)
        checks = gpu_check.check_kernels("cpu", shape=(9, 37))
    finally:
        del sys.modules["gpu_check"]
    # 2 dtypes × 2 conventions × 3 option sets × 3 reductions × in and out of place
    assert len(checks) == 72
    assert [c.name for c in checks if not c.ok] == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_compiled_kernels_on_cuda(tmp_path):
    """On a GPU, the compiled kernels (a fresh process: this one runs Triton's interpreter)."""
    result = run_gpu_check("--check-only", "--out", str(tmp_path / "report.md"))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("convention", ["uniform", "others"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_float32_math_without_weights_or_prior_takes_the_scalar_kernel(convention, dtype):
    # no weights, no prior, float32 math: the kernel folds ignore_index and the coefficients in itself
    z, y = problem(6, 37, dtype)
    assert index_target_coefficients(y, 37, 0.2, convention=convention, ignore_index=IGNORE).row_scalars is not None
    leaf = z.clone().requires_grad_(True)
    loss = ls.fused_cross_entropy(leaf * 1.0, y, ignore_index=IGNORE, label_smoothing=0.2, convention=convention,
                                  backend="triton", inplace=True)  # fmt: skip
    (grad,) = torch.autograd.grad(loss, leaf)
    ref_leaf = z.float().requires_grad_(True)
    ref = ls.cross_entropy(ref_leaf, y, ignore_index=IGNORE, label_smoothing=0.2, convention=convention)
    (ref_grad,) = torch.autograd.grad(ref, ref_leaf)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=2.0**-7, atol=1e-5)
    torch.testing.assert_close(loss.float(), ref, **tol)
    torch.testing.assert_close(grad.float(), ref_grad, **tol)
    bad = y.clone()
    bad[1] = 37
    with pytest.raises(ValueError, match=r"class indices in \[0, 37\) or ignore_index=-100, but got 37"):
        ls.fused_cross_entropy(leaf * 1.0, bad, label_smoothing=0.2, convention=convention, backend="triton")
