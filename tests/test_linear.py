"""linear_cross_entropy: equal to labelsmooth.cross_entropy on the materialised logits h Wᵀ + b."""

import pytest
import torch

import labelsmooth
from labelsmooth import LinearCrossEntropyLoss, linear_cross_entropy

D, VOCAB = 5, 9


def _case(seed, lead=(11,)):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn((*lead, D), generator=g, dtype=torch.float64)
    W = torch.randn(VOCAB, D, generator=g, dtype=torch.float64)
    b = torch.randn(VOCAB, generator=g, dtype=torch.float64)
    y = torch.randint(0, VOCAB, lead, generator=g)
    y.view(-1)[::4] = -100
    w = torch.rand(VOCAB, generator=g, dtype=torch.float64) + 0.5
    prior = torch.rand(VOCAB, generator=g, dtype=torch.float64) + 0.1
    return h, W, b, y, w, prior / prior.sum()


def _reference(h, W, y, *, linear_bias=None, **kw):
    z = h @ W.T + (linear_bias if linear_bias is not None else 0)
    return labelsmooth.cross_entropy(z.movedim(-1, 1) if z.dim() > 2 else z, y, **kw)


def _grads(fn, h, W, b, y, upstream=None, **kw):
    leaves = [t.clone().requires_grad_() for t in (h, W, b)]
    loss = fn(leaves[0], leaves[1], y, linear_bias=leaves[2], **kw)
    loss.backward(upstream if upstream is not None else torch.ones_like(loss))
    return loss.detach(), *(t.grad for t in leaves)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("convention", ["uniform", "others"])
@pytest.mark.parametrize("use_prior, use_weight", [(False, False), (True, True), (True, False)])
def test_matches_reference_float64(reduction, convention, use_prior, use_weight):
    h, W, b, y, w, prior = _case(0)
    kw = dict(
        reduction=reduction, label_smoothing=0.2, convention=convention,
        prior=prior if use_prior else None, weight=w if use_weight else None,
    )  # fmt: skip
    upstream = torch.linspace(0.5, 2.0, y.numel(), dtype=torch.float64) if reduction == "none" else None
    expected = _grads(_reference, h, W, b, y, upstream, **kw)
    for chunk in (None, 1, 4):  # 4 does not divide 11 rows
        got = _grads(linear_cross_entropy, h, W, b, y, upstream, chunk_size=chunk, **kw)
        for a, e in zip(got, expected):
            torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-12)


def test_without_bias_nd_input_and_scaled_upstream():
    h, W, _, y, w, _ = _case(1, lead=(3, 4))
    hr, Wr = h.clone().requires_grad_(), W.clone().requires_grad_()
    ref = 3.0 * _reference(hr, Wr, y, weight=w, label_smoothing=0.1)
    ref.backward()
    ho, Wo = h.clone().requires_grad_(), W.clone().requires_grad_()
    out = 3.0 * linear_cross_entropy(ho, Wo, y, weight=w, label_smoothing=0.1, chunk_size=5)
    out.backward()
    torch.testing.assert_close((out, ho.grad, Wo.grad), (ref, hr.grad, Wr.grad), rtol=1e-9, atol=1e-12)


def test_gradcheck_small():
    h, W, b, y, w, prior = _case(2, lead=(4,))
    for red in ("sum", "none"):

        def fn(h_, W_, b_, red=red):
            loss = linear_cross_entropy(
                h_,
                W_,
                y,
                linear_bias=b_,
                weight=w,
                prior=prior,
                reduction=red,
                label_smoothing=0.3,
                chunk_size=3,
            )
            return 0.5 * loss

        assert torch.autograd.gradcheck(fn, tuple(t.clone().requires_grad_() for t in (h, W, b)))


@pytest.mark.parametrize("dtype, tol", [(torch.bfloat16, 2e-2), (torch.float16, 2e-3)])
def test_half_precision_within_tolerance(dtype, tol):
    h, W, b, y, _, _ = _case(3)
    expected = _grads(_reference, *(t.to(dtype).double() for t in (h, W, b)), y, label_smoothing=0.1)
    got = _grads(linear_cross_entropy, *(t.to(dtype) for t in (h, W, b)), y, label_smoothing=0.1)
    for a, e in zip(got, expected):
        assert a.dtype == dtype
        torch.testing.assert_close(a.double(), e, rtol=tol, atol=tol * e.abs().max().item())


def test_module_is_the_function():
    h, W, b, y, w, _ = _case(4)
    module = LinearCrossEntropyLoss(weight=w, label_smoothing=0.1, convention="others", chunk_size=3)
    expected = linear_cross_entropy(h, W, y, linear_bias=b, weight=w, label_smoothing=0.1, convention="others")
    torch.testing.assert_close(module(h, W, y, b), expected, rtol=1e-12, atol=0)


def test_bad_inputs():
    h, W, b, y, _, _ = _case(5)
    z = h @ W.T
    for kwargs in (dict(label_smoothing=-0.1), dict(reduction="avg"), dict(weight=torch.ones(3))):
        with pytest.raises((ValueError, TypeError)) as ref:
            labelsmooth.cross_entropy(z, y, **kwargs)
        with pytest.raises(type(ref.value)) as ours:
            linear_cross_entropy(h, W, y, **kwargs)
        assert str(ours.value) == str(ref.value)
    with pytest.raises(ValueError, match="`target`"):
        linear_cross_entropy(h, W, torch.full_like(y, VOCAB))
    with pytest.raises(ValueError, match="`linear_weight`"):
        linear_cross_entropy(h, W[:, :3], y)
    with pytest.raises(ValueError, match="`linear_bias`"):
        linear_cross_entropy(h, W, y, linear_bias=b[:3])
    with pytest.raises(TypeError, match="`target`"):
        linear_cross_entropy(h, W, torch.zeros(11, VOCAB))
