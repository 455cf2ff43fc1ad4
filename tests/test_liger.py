"""LigerCompatibleFusedLinearCrossEntropyLoss against Liger-Kernel's definitions, written out here in float64.

Liger itself needs a GPU, so its loss is transcribed from its kernel (liger_kernel/ops/cross_entropy.py,
fused_linear_cross_entropy.py): per kept row, with logits capped first,
    ℓ_i = (1 − ε)·w_y·(lse − z_y) + ε/V·Σ_k w_k·(lse − z_k),   ζ_i = λ·lse²,
mean = Σℓ_i / Σ_kept w_y + Σζ_i / n_kept (the z-loss unweighted), sum = Σ(ℓ_i + ζ_i), none = ℓ_i + ζ_i;
ignored rows 0; an all-ignored mean is 0. Gradients (input, weight, bias) come from autograd through
this dense formula, and the formula's own logits gradient is checked against the gradient Liger's
kernel writes (its second pass), so the transcription is checked from both ends.
"""

import pytest
import torch

import labelsmooth
from labelsmooth import LigerCompatibleFusedLinearCrossEntropyLoss as Loss

N, D, VOCAB = 10, 6, 9
IGNORE = -100


def liger_rows(z, y, *, ce_weight, eps, lam, softcap, ignore_index=IGNORE):
    """(loss rows ℓ_i, z-loss rows ζ_i, kept mask), float64, Liger's formulas on logits z (N, V)."""
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    Vn = z.shape[1]
    w = torch.ones(Vn, dtype=z.dtype) if ce_weight is None else ce_weight.double()
    keep = y != ignore_index
    safe = torch.where(keep, y, 0)
    lse = torch.logsumexp(z, 1)
    ce = w[safe] * (lse - z.gather(1, safe[:, None])[:, 0])
    smooth = (eps / Vn) * ((lse[:, None] - z) * w).sum(1)
    row = (1 - eps) * ce + smooth if eps > 0 else ce
    zeta = lam * lse**2
    zero = torch.zeros_like(row)
    return torch.where(keep, row, zero), torch.where(keep, zeta, zero), keep, w[safe]


def liger_loss(h, W, b, y, *, ce_weight=None, eps=0.0, lam=0.0, softcap=None, reduction="mean"):
    """Liger's (loss, z_loss) for the head z = h Wᵀ + b, float64."""
    z = h @ W.T + (0 if b is None else b)
    row, zeta, keep, w_y = liger_rows(z, y, ce_weight=ce_weight, eps=eps, lam=lam, softcap=softcap)
    if reduction == "none":
        return row + zeta, zeta
    if reduction == "sum":
        return (row + zeta).sum(), zeta.sum()
    n = keep.sum()
    if n == 0:
        return (row + zeta).sum() * 0, zeta.sum() * 0
    denom = n if ce_weight is None else (w_y * keep).sum()
    return row.sum() / denom + zeta.sum() / n, zeta.sum() / n


def liger_kernel_logit_grad(z, y, *, ce_weight, eps, lam, softcap, reduction):
    """The gradient Liger's kernel writes into the logits (mean: divided by Σw_y, z-loss part by n)."""
    zc = z if softcap is None else softcap * torch.tanh(z / softcap)
    Vn = z.shape[1]
    w = torch.ones(Vn, dtype=z.dtype) if ce_weight is None else ce_weight.double()
    keep = y != IGNORE
    safe = torch.where(keep, y, 0)
    p = torch.softmax(zc, 1)
    lse = torch.logsumexp(zc, 1, keepdim=True)
    onehot = torch.nn.functional.one_hot(safe, Vn).double()
    d_ori = (1 - eps) * (p - onehot) * w[safe][:, None]
    d_smooth = (eps / Vn) * (-w + p * w.sum())
    d_z = 2 * lam * lse * p
    if reduction == "mean":
        n = keep.sum()
        denom = n if ce_weight is None else (w[safe] * keep).sum()
        d_ori, d_smooth, d_z = d_ori / denom, d_smooth / denom, d_z / n
    g = d_ori + d_smooth + d_z
    if softcap is not None:
        g = g * (1 - torch.tanh(z / softcap) ** 2)
    return torch.where(keep[:, None], g, torch.zeros_like(g))


def _case(seed, dtype=torch.float64, all_ignored=False):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(N, D, generator=g, dtype=torch.float64)
    W = torch.randn(VOCAB, D, generator=g, dtype=torch.float64) * 0.8
    b = torch.randn(VOCAB, generator=g, dtype=torch.float64)
    y = torch.randint(0, VOCAB, (N,), generator=g)
    y[::3] = IGNORE
    if all_ignored:
        y[:] = IGNORE
    w = torch.rand(VOCAB, generator=g, dtype=torch.float64) + 0.3
    return [t.to(dtype) for t in (h, W, b)] + [y, w.to(dtype)]


def _ours(h, W, b, y, upstream, **kw):
    h, W = h.detach().clone().requires_grad_(), W.detach().clone().requires_grad_()
    b = None if b is None else b.detach().clone().requires_grad_()
    out = Loss(**kw)(W, h, y, b)
    loss, z = (out.loss, out.z_loss) if kw.get("return_z_loss") else (out, None)
    loss.backward(upstream if upstream is not None else torch.ones_like(loss))
    grads = (h.grad, W.grad, None if b is None else b.grad)
    return loss.detach(), None if z is None else z.detach(), grads


def _liger(h, W, b, y, upstream, **kw):
    h, W = h.detach().double().clone().requires_grad_(), W.detach().double().clone().requires_grad_()
    b = None if b is None else b.detach().double().clone().requires_grad_()
    loss, z = liger_loss(h, W, b, y, **kw)
    loss.backward(upstream.double() if upstream is not None else torch.ones_like(loss))
    return loss.detach(), z.detach(), (h.grad, W.grad, None if b is None else b.grad)


COMBOS = [  # (ce_weight, ε, λ, softcap)
    (False, 0.0, 0.0, None),
    (False, 0.1, 0.0, None),
    (True, 0.1, 0.0, None),
    (False, 0.2, 1e-2, None),
    (True, 0.2, 1e-2, None),
    (False, 0.0, 0.0, 3.0),
    (True, 0.15, 5e-3, 2.5),
    (True, 0.0, 2e-2, 4.0),
    (False, 1.0, 1e-3, 5.0),
]


def _compare(reduction, use_weight, eps, lam, softcap, *, bias=True, dtype=torch.float64, chunk_size=None, seed=0):
    h, W, b, y, w = _case(seed, dtype)
    b = b if bias else None
    upstream = torch.linspace(0.5, 2.0, N, dtype=dtype) if reduction == "none" else None
    common = dict(eps=eps, lam=lam, softcap=softcap, reduction=reduction, ce_weight=w if use_weight else None)
    ref_loss, ref_z, ref_grads = _liger(h, W, b, y, upstream, **common)
    loss, z, grads = _ours(
        h, W, b, y, upstream, ce_weight=w if use_weight else None, lse_square_scale=lam, label_smoothing=eps,
        reduction=reduction, softcap=softcap, return_z_loss=True, chunk_size=chunk_size,
    )  # fmt: skip
    tol = dict(rtol=1e-9, atol=1e-11) if dtype == torch.float64 else dict(rtol=2e-5, atol=2e-5)
    assert loss.dtype == dtype
    torch.testing.assert_close(loss.double(), ref_loss, **tol)
    torch.testing.assert_close(z.double(), ref_z, **tol)
    for got, want in zip(grads, ref_grads):
        if want is None:
            assert got is None
        else:
            torch.testing.assert_close(got.double(), want, **tol)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("use_weight, eps, lam, softcap", COMBOS)
def test_values_z_loss_and_gradients_equal_ligers_definitions(reduction, use_weight, eps, lam, softcap):
    _compare(reduction, use_weight, eps, lam, softcap)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_without_bias_and_in_several_chunks(reduction):
    _compare(reduction, True, 0.1, 1e-2, 3.0, bias=False, chunk_size=3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lower_precision_inputs_match_in_float32(dtype):
    tol_dtype = torch.float32 if dtype == torch.float32 else None
    if tol_dtype is None:  # bf16 inputs: compare with the bf16-rounded inputs computed in float64
        h, W, b, y, w = _case(1, dtype)
        loss, z, grads = _ours(h, W, b, y, None, ce_weight=w, lse_square_scale=1e-2, label_smoothing=0.1,
                               return_z_loss=True)  # fmt: skip
        ref_loss, ref_z, ref_grads = _liger(h, W, b, y, None, ce_weight=w, eps=0.1, lam=1e-2, reduction="mean")
        torch.testing.assert_close(loss.double(), ref_loss, rtol=1e-2, atol=1e-2)
        for got, want in zip(grads, ref_grads):
            assert got.dtype == dtype
            torch.testing.assert_close(got.double(), want, rtol=2e-2, atol=2e-2)
        return
    _compare("mean", True, 0.1, 1e-2, 3.0, dtype=dtype)


def test_the_transcribed_loss_has_the_gradient_ligers_kernel_writes():
    """The dense formula above, differentiated by autograd, gives the logits gradient of Liger's kernel."""
    g = torch.Generator().manual_seed(3)
    z = torch.randn(N, VOCAB, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, VOCAB, (N,), generator=g)
    y[::4] = IGNORE
    w = torch.rand(VOCAB, generator=g, dtype=torch.float64) + 0.2
    for ce_weight in (None, w):
        for reduction in ("mean", "sum"):
            zz = z.clone().requires_grad_()
            row, zeta, keep, w_y = liger_rows(zz, y, ce_weight=ce_weight, eps=0.2, lam=1e-2, softcap=2.0)
            if reduction == "mean":
                denom = keep.sum() if ce_weight is None else (w_y * keep).sum()
                total = row.sum() / denom + zeta.sum() / keep.sum()
            else:
                total = (row + zeta).sum()
            total.backward()
            want = liger_kernel_logit_grad(z, y, ce_weight=ce_weight, eps=0.2, lam=1e-2, softcap=2.0,
                                           reduction=reduction)  # fmt: skip
            torch.testing.assert_close(zz.grad, want, rtol=1e-12, atol=1e-12)


def test_weighted_mean_divides_the_z_loss_by_the_kept_rows_not_the_weights():
    """The one place where Liger's mean differs from ours (labelsmooth.linear_cross_entropy's z-loss keeps
    the weighted denominator): the class reproduces Liger's, and the difference is not zero."""
    h, W, b, y, w = _case(2)
    lam = 0.05
    ours = labelsmooth.linear_cross_entropy(h, W, y, linear_bias=b, weight=w, z_loss=lam)
    liger = Loss(ce_weight=w, lse_square_scale=lam)(W, h, y, b)
    ref, _ = liger_loss(h, W, b, y, ce_weight=w, lam=lam)
    torch.testing.assert_close(liger, ref, rtol=1e-12, atol=1e-12)
    assert abs((ours - liger).item()) > 1e-4


def test_all_ignored_mean_is_zero_with_zero_gradients_as_in_liger():
    h, W, b, y, w = _case(4, all_ignored=True)
    for ce_weight in (None, w):
        loss, z, grads = _ours(h, W, b, y, None, ce_weight=ce_weight, lse_square_scale=1e-2, label_smoothing=0.1,
                               return_z_loss=True)  # fmt: skip
        assert loss.item() == 0.0 and z.item() == 0.0
        for g in grads:
            assert torch.count_nonzero(g) == 0


def test_return_z_loss_gives_a_named_pair_whose_z_part_has_no_gradient():
    h, W, b, y, _ = _case(5)
    out = Loss(lse_square_scale=1e-2, return_z_loss=True)(W.clone().requires_grad_(), h, y, b)
    loss, z = out
    assert out.loss is loss and out.z_loss is z
    assert loss.requires_grad and not z.requires_grad
    assert isinstance(Loss()(W, h, y, b), torch.Tensor)


def test_ours_convention_and_prior_pass_through_to_linear_cross_entropy():
    h, W, b, y, w = _case(6)
    prior = torch.softmax(torch.randn(VOCAB, dtype=torch.float64), 0)
    got = Loss(label_smoothing=0.2, convention="others", prior=prior, reduction="sum")(W, h, y, b)
    want = labelsmooth.cross_entropy(h @ W.T + b, y, reduction="sum", label_smoothing=0.2, convention="others",
                                     prior=prior)  # fmt: skip
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_the_constructor_is_ligers_positional_order():
    w = torch.ones(VOCAB)
    m = Loss(w, -1, 1e-4, 0.1, "sum", 30.0, True, torch.float32)
    assert (m.ignore_index, m.lse_square_scale, m.label_smoothing, m.reduction, m.softcap, m.return_z_loss) == (
        -1, 1e-4, 0.1, "sum", 30.0, True,
    )  # fmt: skip
    assert m.accum_dtype is torch.float32 and m.ce_weight is w


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(lse_square_scale=-1.0), "lse_square_scale"),
        (dict(lse_square_scale=float("nan")), "lse_square_scale"),
        (dict(label_smoothing=1.5), "label_smoothing"),
        (dict(reduction="avg"), "reduction"),
        (dict(softcap=0.0), "softcap"),
        (dict(return_z_loss=1), "return_z_loss"),
        (dict(accum_dtype="float32"), "accum_dtype"),
        (dict(accum_dtype=torch.int32), "accum_dtype"),
        (dict(ce_weight=torch.ones(3, 3)), "ce_weight"),
        (dict(ce_weight=torch.ones(3, dtype=torch.long)), "ce_weight"),
        (dict(use_token_scaling=True), "use_token_scaling"),
        (dict(return_token_accuracy=True), "return_token_accuracy"),
        (dict(convention="fairseq"), "convention"),
        (dict(ignore_index=1.0), "ignore_index"),
    ],
)
def test_bad_constructor_arguments_are_named(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        Loss(**kwargs)


def test_bad_forward_arguments_are_named():
    h, W, b, y, w = _case(7, torch.float32)
    with pytest.raises(ValueError, match="ce_weight"):
        Loss(ce_weight=torch.ones(VOCAB + 1))(W, h, y, b)
    with pytest.raises(ValueError, match="lin_weight"):
        Loss()(W[:, :-1], h, y, b)
    with pytest.raises(ValueError, match="bias"):
        Loss()(W, h, y, b[:-1])
    with pytest.raises(TypeError, match="_input"):
        Loss()(W, h.long(), y, b)
    with pytest.raises(ValueError, match="target"):
        Loss()(W, h, y[:-1], b)
    with pytest.raises(ValueError, match="target"):
        Loss()(W, h, torch.full_like(y, VOCAB), b)
    with pytest.raises(ValueError, match="accum_dtype"):
        Loss(accum_dtype=torch.float64)(W, h, y, b)
    with pytest.raises(ValueError, match="ce_weight"):
        Loss(ce_weight=torch.ones(VOCAB, requires_grad=True))(W, h, y, b)
