"""fused_cross_entropy: the same values and gradients as the reference labelsmooth.cross_entropy."""

import pytest
import torch

import labelsmooth
from labelsmooth import fused_cross_entropy
from labelsmooth.kernels import select_backend, torch_backend

K = 7


def _case(seed, n=11, dims=(), ignore=True):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn((n, K, *dims), generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, K, (n, *dims), generator=g)
    if ignore:
        y.view(-1)[::4] = -100
    w = torch.rand(K, generator=g, dtype=torch.float64) + 0.5
    prior = torch.rand(K, generator=g, dtype=torch.float64) + 0.1
    return z, y, w, prior / prior.sum()


def _value_and_grad(fn, z, y, upstream=None, **kw):
    z = z.clone().requires_grad_()
    loss = fn(z, y, **kw)
    loss.backward(upstream if upstream is not None else torch.ones_like(loss))
    return loss.detach(), z.grad


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("convention", ["uniform", "others"])
@pytest.mark.parametrize("use_prior", [False, True])
@pytest.mark.parametrize("use_weight", [False, True])
def test_matches_reference_float64(reduction, convention, use_prior, use_weight):
    z, y, w, prior = _case(0)
    kw = dict(
        reduction=reduction, label_smoothing=0.2, convention=convention,
        prior=prior if use_prior else None, weight=w if use_weight else None,
    )  # fmt: skip
    upstream = torch.linspace(0.5, 2.0, y.numel(), dtype=torch.float64) if reduction == "none" else None
    ref, ref_grad = _value_and_grad(labelsmooth.cross_entropy, z, y, upstream, **kw)
    for chunk in (None, 1, 3, 4):  # 3 and 4 do not divide 11 rows
        out, grad = _value_and_grad(fused_cross_entropy, z, y, upstream, chunk_size=chunk, **kw)
        torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
def test_nd_inputs_and_scaled_upstream(eps):
    z, y, w, _ = _case(1, n=3, dims=(4, 2))
    ref, ref_grad = _value_and_grad(lambda a, b: 2.5 * labelsmooth.cross_entropy(a, b, w, label_smoothing=eps), z, y)
    out, grad = _value_and_grad(
        lambda a, b: 2.5 * fused_cross_entropy(a, b, w, label_smoothing=eps, chunk_size=5), z, y
    )
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-12)


def test_single_sample_and_probability_targets():
    z, y, w, prior = _case(2)
    ref, ref_grad = _value_and_grad(labelsmooth.cross_entropy, z[0], y[1], label_smoothing=0.3)
    out, grad = _value_and_grad(fused_cross_entropy, z[0], y[1], label_smoothing=0.3)
    torch.testing.assert_close((out, grad), (ref, ref_grad), rtol=1e-9, atol=1e-12)
    t = torch.softmax(torch.randn(11, K, dtype=torch.float64), 1)
    for red in ("mean", "none"):
        kw = dict(weight=w, label_smoothing=0.2, convention="others", prior=prior, reduction=red)
        ref, ref_grad = _value_and_grad(labelsmooth.cross_entropy, z, t, **kw)
        out, grad = _value_and_grad(fused_cross_entropy, z, t, chunk_size=4, **kw)
        torch.testing.assert_close((out, grad), (ref, ref_grad), rtol=1e-9, atol=1e-12)


def test_gradcheck_small():
    z, y, w, prior = _case(3, n=5)
    z.requires_grad_()
    for red in ("mean", "none"):

        def fn(a, red=red):
            return 1.5 * fused_cross_entropy(a, y, w, reduction=red, label_smoothing=0.2, prior=prior, chunk_size=2)

        assert torch.autograd.gradcheck(fn, (z,))


def test_all_ignored_mean_is_nan_like_reference():
    z, y, _, _ = _case(4)
    y = torch.full_like(y, -100)
    assert torch.isnan(fused_cross_entropy(z, y)) and torch.isnan(labelsmooth.cross_entropy(z, y))


@pytest.mark.parametrize("dtype, tol", [(torch.bfloat16, 2e-2), (torch.float16, 2e-3)])
def test_half_precision_within_tolerance(dtype, tol):
    """Half inputs: float32 maths; the loss and gradient are only rounded to the input's dtype at the end."""
    g = torch.Generator().manual_seed(5)
    z = (torch.randn(64, 1000, generator=g) * 4).to(dtype)
    y = torch.randint(0, 1000, (64,), generator=g)
    ref, ref_grad = _value_and_grad(labelsmooth.cross_entropy, z.double(), y, label_smoothing=0.1)
    out, grad = _value_and_grad(fused_cross_entropy, z, y, label_smoothing=0.1, chunk_size=10)
    assert out.dtype == dtype and grad.dtype == dtype
    torch.testing.assert_close(out.double(), ref, rtol=tol, atol=0)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=tol, atol=tol * ref_grad.abs().max().item())


def test_inplace_overwrites_activation_with_gradient():
    z, y, w, _ = _case(6)
    ref, ref_grad = _value_and_grad(labelsmooth.cross_entropy, z, y, weight=w, label_smoothing=0.1)
    leaf = z.clone().requires_grad_()
    act = leaf * 1.0  # a non-leaf activation
    loss = fused_cross_entropy(act, y, w, label_smoothing=0.1, inplace=True, chunk_size=3)
    torch.testing.assert_close(act.detach(), ref_grad, rtol=1e-9, atol=1e-12)  # the logits are destroyed
    loss.backward()
    torch.testing.assert_close(loss.detach(), ref, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(leaf.grad, ref_grad, rtol=1e-9, atol=1e-12)


def test_inplace_half_and_no_grad_keeps_logits():
    z, y, _, _ = _case(7)
    act = z.float().requires_grad_().mul(1.0).to(torch.bfloat16)
    fused_cross_entropy(act, y, label_smoothing=0.1, inplace=True).backward()
    with torch.no_grad():
        kept = z.clone()
        out = fused_cross_entropy(kept, y, label_smoothing=0.1, inplace=True)
    assert torch.equal(kept, z)
    torch.testing.assert_close(out, labelsmooth.cross_entropy(z, y, label_smoothing=0.1), rtol=1e-9, atol=0)


def test_inplace_refusals():
    z, y, _, _ = _case(8, n=3, dims=(2,))
    with pytest.raises(ValueError, match="`input`.*non-leaf"):
        fused_cross_entropy(z[:, :, 0].contiguous().requires_grad_(), y[:, 0], inplace=True)
    act = z.clone().requires_grad_() * 1.0
    with pytest.raises(ValueError, match="`input`.*contiguous"):
        fused_cross_entropy(act, y, inplace=True)  # (N, C, d): the class dimension is not last in memory
    saved = z[:, :, 0].contiguous().requires_grad_().tanh()  # tanh saves its output for backward
    loss = fused_cross_entropy(saved, y[:, 0], inplace=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_backward_twice_raises():
    z, y, _, _ = _case(9)
    z.requires_grad_()
    loss = fused_cross_entropy(z, y)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="only once"):
        loss.backward()


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(label_smoothing=1.5), dict(reduction="avg"), dict(convention="fairseq"),
        dict(weight=torch.ones(3)), dict(prior=torch.full((K,), 0.5)), dict(ignore_index=1.5),
    ],
)  # fmt: skip
def test_bad_inputs_give_the_reference_errors(kwargs):
    z, y, _, _ = _case(10)
    with pytest.raises((ValueError, TypeError)) as ref:
        labelsmooth.cross_entropy(z, y, **kwargs)
    with pytest.raises(type(ref.value)) as ours:
        fused_cross_entropy(z, y, **kwargs)
    assert str(ours.value) == str(ref.value)
    for bad_target in (y[:3], y.double()[:, None].expand(-1, 2), torch.full_like(y, K)):
        with pytest.raises((ValueError, TypeError)) as ref:
            labelsmooth.cross_entropy(z, bad_target)
        with pytest.raises(type(ref.value), match=None) as ours:
            fused_cross_entropy(z, bad_target)
        assert str(ours.value) == str(ref.value)


def test_backend_choice():
    z = torch.zeros(2, 3)
    assert select_backend("auto", z) is torch_backend and select_backend("torch", z) is torch_backend
    with pytest.raises(ValueError, match="`backend`"):
        select_backend("triton", z)  # CPU tensor without TRITON_INTERPRET=1 (or no Triton backend)
    with pytest.raises(ValueError, match="`backend`"):
        fused_cross_entropy(z, torch.tensor([0, 1]), backend="cuda")


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("bad", [-1, K, 10 * K])
def test_out_of_range_targets_raise_the_reference_error_after_the_kernel(inplace, bad):
    # the kernel runs on clamped targets (never out of bounds); the check follows it with the same message
    z, y, _, _ = _case(10)
    y = y.clone()
    y[4] = bad
    with pytest.raises(ValueError) as ref:
        labelsmooth.cross_entropy(z, y)
    zz = z.detach().clone().requires_grad_(True) * 1.0
    with pytest.raises(ValueError) as ours:
        fused_cross_entropy(zz, y, inplace=inplace)
    assert str(ours.value) == str(ref.value) and f"but got {bad}" in str(ours.value)
    with torch.no_grad(), pytest.raises(ValueError, match=f"but got {bad}"):
        fused_cross_entropy(z, y)
