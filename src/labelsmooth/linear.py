r"""Fused linear head + label-smoothed cross-entropy for large vocabularies.

The logits :math:`z = hW^\top + b` are never materialised beyond ``chunk_size × V``. Smoothing costs no extra
pass over the vocabulary: the smoothing term is linear in z, so by the rank-one identity

.. math::
    z_i\cdot v = h_i\cdot(W^\top v) + b\cdot v,

its value needs one (D,) vector :math:`u = W^\top v`, and its gradient :math:`-s_i b_i v` contributes
rank-one terms: :math:`-r\,u^\top` to the input, :math:`-v\,(r^\top h)` to the weight and
:math:`-(\sum_i r_i)\,v` to the bias, with :math:`r_i = s_i b_i`. Each chunk therefore only runs the
plain cross-entropy part (softmax and the true-class term), the same work as ε = 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from labelsmooth import _validation as V
from labelsmooth.kernels.torch_backend import default_chunk_size
from labelsmooth.losses import check_cross_entropy_args, compute_dtype
from labelsmooth.modules import SmoothedCrossEntropyOptions
from labelsmooth.targets import IndexTargetCoefficients, index_target_coefficients


def _chunked(
    h: Tensor,
    W: Tensor,
    bias: Tensor | None,
    c: IndexTargetCoefficients,
    grad_scale: Tensor,
    chunk: int,
    need_grads: bool,
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """Row losses (M,) and, if asked, the gradients of Σ_i grad_scale_i·ℓ_i for h (M, D), W (V, D), b (V,).

    All tensors are in the compute dtype already.
    """
    M, _ = h.shape
    v = c.prior_weighted
    m = c.row_mass
    smooth = c.smoothing  # a host-side fact: no device sync
    row = torch.empty(M, dtype=h.dtype, device=h.device)
    grad_h = torch.empty_like(h) if need_grads else None
    grad_W = torch.zeros_like(W) if need_grads else None
    grad_b = torch.zeros_like(bias) if (need_grads and bias is not None) else None
    for start in range(0, M, chunk):
        stop = min(start + chunk, M)
        hc = h[start:stop]
        z = torch.addmm(bias, hc, W.t()) if bias is not None else hc @ W.t()  # (c, V): the only V-wide buffer
        tgt = c.safe_target[start:stop].unsqueeze(1)
        z_y = z.gather(1, tgt).squeeze(1)
        mx = z.amax(1, keepdim=True)
        z.sub_(mx).exp_()
        sumexp = z.sum(1, keepdim=True)
        mc = m[start:stop]
        row[start:stop] = mc * (mx.squeeze(1) + sumexp.squeeze(1).log()) - c.true_coef[start:stop] * z_y
        if not need_grads:
            continue
        s = grad_scale[start:stop]
        z.mul_((s * mc).unsqueeze(1) / sumexp)
        z.scatter_add_(1, tgt, (-s * c.true_coef[start:stop]).unsqueeze(1))  # z is now the logits' gradient
        torch.mm(z, W, out=grad_h[start:stop])
        grad_W.addmm_(z.t(), hc)
        if grad_b is not None:
            grad_b.add_(z.sum(0))
    if smooth:
        u = v @ W  # (D,) = Wᵀv
        z_v = h @ u + (bias @ v if bias is not None else 0.0)
        row -= c.prior_coef * z_v
        if need_grads:
            r = grad_scale * c.prior_coef  # (M,)
            grad_h.addr_(r, u, alpha=-1.0)
            grad_W.addr_(v, r @ h, alpha=-1.0)
            if grad_b is not None:
                grad_b.sub_(v * r.sum())
    return row, grad_h, grad_W, grad_b


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, W, bias, setup):  # type: ignore[override]
        h, Wc, bc, c, reduction, denominator, chunk, out_shape = setup
        M = h.shape[0]
        ctx.meta = (input.shape, input.dtype, W.dtype, None if bias is None else bias.dtype)
        if reduction == "none":
            # Per-row grad_output is known only in backward, and it weighs the sums over rows in grad_W and
            # grad_b: recompute the chunks there (one more pass of matrix products, no stored logits).
            row, *_ = _chunked(h, Wc, bc, c, None, chunk, need_grads=False)
            ctx.setup = (h, Wc, bc, c, chunk)
            ctx.grads = None
            return row.reshape(out_shape)
        scale = 1.0 / denominator if reduction == "mean" else 1.0
        grad_scale = torch.as_tensor(scale, dtype=h.dtype, device=h.device).expand(M)
        row, gh, gW, gb = _chunked(h, Wc, bc, c, grad_scale, chunk, need_grads=True)
        ctx.grads = (gh, gW, gb)
        ctx.setup = None
        return row.sum() if reduction == "sum" else row.sum() / denominator

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        in_shape, in_dtype, w_dtype, b_dtype = ctx.meta
        if ctx.setup is not None:
            h, Wc, bc, c, chunk = ctx.setup
            _, gh, gW, gb = _chunked(h, Wc, bc, c, grad_output.reshape(-1).to(h.dtype), chunk, need_grads=True)
        else:
            if ctx.grads is None:
                raise RuntimeError(
                    "linear_cross_entropy's backward can run only once after loss.backward(): its gradients were "
                    "computed in the forward pass and handed over without a copy; recompute the loss"
                )
            gh, gW, gb = ctx.grads
            if bool(grad_output != 1):  # a scaled copy; the buffers stay for another backward pass
                g = grad_output.to(gh.dtype)
                gh, gW, gb = gh * g, gW * g, None if gb is None else gb * g
            else:  # loss.backward(): hand the buffers over without a copy
                ctx.grads = None
        return (
            gh.reshape(in_shape).to(in_dtype),
            gW.to(w_dtype),
            None if gb is None else gb.to(b_dtype),
            None,
        )


def linear_cross_entropy(
    input: Tensor,
    linear_weight: Tensor,
    target: Tensor,
    *,
    linear_bias: Tensor | None = None,
    weight: Tensor | None = None,
    reduction: str = "mean",
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    convention: str = "uniform",
    prior: Tensor | None = None,
    chunk_size: int | None = None,
    backend: str = "auto",
) -> Tensor:
    r"""``cross_entropy(linear(input, linear_weight, linear_bias), target, ...)`` without the full logits.

    .. math::
        z_i = W h_i + b, \qquad
        \ell_i = m_i\,\mathrm{lse}(z_i) - a_i\,z_{i,y_i} - b_i\,(h_i\cdot W^\top v + b\cdot v)

    (coefficients: :mod:`labelsmooth.targets`). torch's :func:`torch.nn.functional.linear_cross_entropy`
    signature plus our ``convention``/``prior``/``chunk_size``; values and gradients equal
    :func:`labelsmooth.cross_entropy` on the materialised logits (tests: 1e-9 relative in float64).

    Rows are processed ``chunk_size`` at a time (default: about 2**24 logits per chunk,
    :func:`default_chunk_size`); each chunk's logits become their gradient in place, and the gradients of
    input, ``linear_weight`` and ``linear_bias`` are accumulated in the forward pass (backward scales them).
    Smoothing uses the rank-one identity of the module docstring: no extra vocabulary pass. For
    ``reduction="none"`` the gradients depend on the per-row grad_output, so backward recomputes the
    chunks instead. float16/bfloat16 are computed in float32 (a float32 copy of the weight is made).
    Class indices only (class-probability targets would need an (N, V) target, defeating the purpose).
    ``loss.backward()`` hands the gradients over without a copy (a second backward raises); other
    upstream gradients get scaled copies. Only the torch backend exists for this function so far.

    Args:
        input: (N, D) or (..., D) hidden states.
        linear_weight: (V, D).
        target: class indices of shape (N,) or (...), values in [0, V) or ``ignore_index``.
        linear_bias: optional (V,).
        weight, reduction, ignore_index, label_smoothing, convention, prior: as
            :func:`labelsmooth.cross_entropy`.
        chunk_size: rows per chunk; None for the default.
        backend: "auto" or "torch" ("triton" is refused for now).

    Returns:
        The loss in the input's dtype: a scalar, or shape (...) for ``reduction="none"``.

    Example:
        >>> import torch, labelsmooth
        >>> h = torch.randn(6, 4, dtype=torch.float64); W = torch.randn(9, 4, dtype=torch.float64)
        >>> y = torch.tensor([0, 8, 3, 3, -100, 1])
        >>> loss = labelsmooth.linear_cross_entropy(h, W, y, label_smoothing=0.1, chunk_size=4)
        >>> torch.allclose(loss, labelsmooth.cross_entropy(h @ W.T, y, label_smoothing=0.1))
        True
    """
    V.check_logits(input)
    V.check_logits(linear_weight, "linear_weight")
    if input.dim() < 1 or linear_weight.dim() != 2 or linear_weight.shape[1] != input.shape[-1]:
        raise ValueError(
            f"Expected argument `linear_weight` to have shape (V, {input.shape[-1]}) for input of shape "
            f"{tuple(input.shape)}, but got {tuple(linear_weight.shape)}"
        )
    vocab, D = linear_weight.shape
    if linear_bias is not None:
        V.check_logits(linear_bias, "linear_bias")
        if linear_bias.shape != (vocab,):
            raise ValueError(
                f"Expected argument `linear_bias` to have shape ({vocab},), but got {tuple(linear_bias.shape)}"
            )
    backend = V.check_choice("backend", backend, ("auto", "torch", "triton"))
    if backend == "triton":
        raise ValueError(
            "Expected argument `backend` to be 'auto' or 'torch' for linear_cross_entropy, but got 'triton'"
        )
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"Expected argument `chunk_size` to be a positive integer or None, but got {chunk_size!r}")
    M = input.numel() // D if D else 0
    lead = input.shape[:-1]
    if not isinstance(target, Tensor) or target.is_floating_point():
        raise TypeError(
            "Expected argument `target` to hold integer class indices for linear_cross_entropy, but got "
            f"{getattr(target, 'dtype', type(target).__name__)}"
        )
    if target.shape != lead:
        raise ValueError(
            f"Expected argument `target` to have shape {tuple(lead)} for input of shape {tuple(input.shape)}, but got {tuple(target.shape)}"
        )
    meta = torch.empty((M, vocab), dtype=input.dtype, device="meta")
    args = check_cross_entropy_args(
        meta, target.reshape(-1), weight, ignore_index, reduction, label_smoothing, convention, prior
    )
    dtype = compute_dtype(input.dtype)
    with torch.no_grad():
        h = input.detach().reshape(M, D).to(dtype)
        Wc = linear_weight.detach().to(dtype)
        bc = None if linear_bias is None else linear_bias.detach().to(dtype)
        c = index_target_coefficients(
            args.target, vocab, args.label_smoothing, convention=args.convention, prior=prior,
            weight=weight, ignore_index=ignore_index, dtype=dtype,
        )  # fmt: skip
        denominator = c.row_weight.sum()
    chunk = chunk_size or default_chunk_size(M, vocab)
    setup = (h, Wc, bc, c, args.reduction, denominator, chunk, lead)
    loss = _LinearCrossEntropy.apply(input, linear_weight, linear_bias, setup)
    return loss.to(input.dtype)


class LinearCrossEntropyLoss(SmoothedCrossEntropyOptions):
    """Module form of :func:`labelsmooth.linear_cross_entropy`: ``loss(input, linear_weight, target, linear_bias)``.

    Example:
        >>> import torch, labelsmooth
        >>> head = torch.nn.Linear(4, 9)
        >>> loss_fn = labelsmooth.LinearCrossEntropyLoss(label_smoothing=0.1)
        >>> loss = loss_fn(torch.randn(3, 4), head.weight, torch.tensor([1, 2, 3]), head.bias)
        >>> loss.backward(); head.weight.grad.shape
        torch.Size([9, 4])
    """

    def __init__(
        self,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        *,
        convention: str = "uniform",
        prior: Tensor | None = None,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(weight, ignore_index, reduction, label_smoothing, convention=convention, prior=prior)
        self.chunk_size = chunk_size

    def forward(
        self, input: Tensor, linear_weight: Tensor, target: Tensor, linear_bias: Tensor | None = None
    ) -> Tensor:
        return linear_cross_entropy(
            input, linear_weight, target, linear_bias=linear_bias, weight=self.weight,
            reduction=self.reduction, ignore_index=self.ignore_index, label_smoothing=self.label_smoothing,
            convention=self.convention, prior=self.prior, chunk_size=self.chunk_size,
        )  # fmt: skip
