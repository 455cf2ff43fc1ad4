"""The compiled CPU backend (torch.compile of the chunk computation): the reference's values and gradients.

Each new dtype or prior kind compiles a kernel (seconds each), so this file keeps to a few of them.
"""

import pytest
import torch

import labelsmooth
from labelsmooth import fused_cross_entropy, kernels
from labelsmooth.kernels import select_backend
from tests.test_fused import _case, _value_and_grad  # the same problems as the plain backend's tests

pytestmark = pytest.mark.skipif(kernels._cxx_compiler() is None, reason="torch.compile needs a C++ compiler")


def test_backend_is_selected_by_name_and_refused_without_a_compiler(monkeypatch):
    from labelsmooth.kernels import compiled_backend

    assert select_backend("compiled", torch.zeros(2, 3)) is compiled_backend
    monkeypatch.setattr(kernels, "_cxx_compiler", lambda: None)
    with pytest.raises(ValueError, match=r"`backend`.*'compiled'.*C\+\+ compiler.*backend='torch'"):
        fused_cross_entropy(torch.zeros(2, 3), torch.tensor([0, 1]), backend="compiled")


@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("convention", ["uniform", "others"])
@pytest.mark.parametrize("use_prior", [False, True])
@pytest.mark.parametrize("use_weight", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_matches_reference_float64(eps, convention, use_prior, use_weight, reduction):
    z, y, w, prior = _case(0)
    kw = dict(
        reduction=reduction, label_smoothing=eps, convention=convention,
        prior=prior if use_prior else None, weight=w if use_weight else None,
    )  # fmt: skip
    upstream = torch.linspace(0.5, 2.0, y.numel(), dtype=torch.float64) if reduction == "none" else None
    ref, ref_grad = _value_and_grad(labelsmooth.cross_entropy, z, y, upstream, **kw)
    out, grad = _value_and_grad(fused_cross_entropy, z, y, upstream, chunk_size=4, backend="compiled", **kw)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-12)


def test_nd_input_default_chunks():
    z, y, w, _ = _case(1, n=3, dims=(4, 2))
    ref, ref_grad = _value_and_grad(labelsmooth.cross_entropy, z, y, weight=w, label_smoothing=0.1)
    out, grad = _value_and_grad(fused_cross_entropy, z, y, weight=w, label_smoothing=0.1, backend="compiled")
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_inplace_writes_the_gradient_into_the_logits(dtype):
    # in place the logits are read (max, target logit, row sum) and overwritten in the same compiled call
    z, y, _, _ = _case(2, n=64)
    z = z.to(dtype)  # the reference sees the same rounded logits, in float64
    ref, ref_grad = _value_and_grad(labelsmooth.cross_entropy, z.double(), y, label_smoothing=0.1)
    leaf = z.clone().requires_grad_()
    act = leaf * 1
    loss = fused_cross_entropy(act, y, label_smoothing=0.1, inplace=True, chunk_size=10, backend="compiled")
    loss.backward()
    tol = {torch.float64: dict(rtol=1e-9, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-6)}.get(
        dtype, dict(rtol=1e-2, atol=2e-3)
    )
    assert loss.dtype == dtype
    torch.testing.assert_close(loss.double(), ref, **tol)
    torch.testing.assert_close(leaf.grad.double(), ref_grad, **tol)
    torch.testing.assert_close(act.detach().double(), ref_grad, **tol)  # the logits now hold the gradient


def test_compiles_once_per_class_count_and_never_for_a_new_row_count(monkeypatch):
    # Dynamo's automatic dynamic shapes would make the class count symbolic after a second K, and a
    # kernel generic in K ran 1.5x slower at 65,536 x 100 (docs/performance.md): the class dimension is
    # pinned static, while the rows (the tail chunk, a new batch size) vary without recompiling.
    from torch._dynamo.testing import CompileCounterWithBackend

    from labelsmooth.kernels import compiled_backend

    counter = CompileCounterWithBackend("eager")  # Dynamo's decisions, without Inductor's seconds
    monkeypatch.setattr(
        compiled_backend, "_compiled", lambda: torch.compile(compiled_backend._rows, fullgraph=True, backend=counter)
    )
    torch._dynamo.reset()

    def run(n, k, chunk):
        z = torch.randn(n, k, dtype=torch.float64, requires_grad=True)
        y = torch.arange(n) % k
        loss = fused_cross_entropy(z, y, label_smoothing=0.1, chunk_size=chunk, backend="compiled")
        ref = labelsmooth.cross_entropy(z, y, label_smoothing=0.1)
        torch.testing.assert_close(loss, ref, rtol=1e-9, atol=1e-12)
        (grad,) = torch.autograd.grad(loss, z)
        torch.testing.assert_close(grad, torch.autograd.grad(ref, z)[0], rtol=1e-9, atol=1e-12)
        return counter.frame_count

    try:
        run(12, 40, chunk=8)  # chunks of 8 rows, then a tail of 4 at an offset: a few kernels for K = 40
        warm = run(20, 40, chunk=6)
        assert run(30, 40, chunk=7) == warm  # other row counts and offsets: no new kernel
        assert run(10, 40, chunk=4) == warm  # (a 1-row chunk would compile once more: Dynamo specialises size 1)
        first = run(8, 30, chunk=8)  # a new class count: its own kernel
        assert first > warm
        assert run(8, 20, chunk=8) == first + 1  # and another: a kernel generic in K would have been reused
    finally:
        torch._dynamo.reset()
