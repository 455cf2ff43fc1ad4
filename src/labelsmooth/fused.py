r"""Fused label-smoothed cross-entropy: the gradient is computed during the forward pass, chunk by chunk.

Same semantics and results as :func:`labelsmooth.cross_entropy` (the reference), computed by a backend of
:mod:`labelsmooth.kernels`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from labelsmooth import _validation as V
from labelsmooth._common import class_dim, compute_dtype, mean_scale, reduce_rows
from labelsmooth.kernels import select_backend
from labelsmooth.targets import coefficients


class _PrecomputedGrad(torch.autograd.Function):
    """Returns a loss whose gradient w.r.t. ``logits`` was computed in the forward pass.

    backward with a scalar grad_output of 1 (``loss.backward()``) hands the stored buffer over without a
    copy, after which the graph cannot be differentiated again; any other grad_output (per row for
    reduction="none") returns a scaled copy and keeps the buffer, so repeated backward passes work.
    """

    @staticmethod
    def forward(ctx, input: Tensor, loss: Tensor, grad: Tensor, per_row: bool) -> Tensor:  # type: ignore[override]
        # grad is (M, K), class dimension last; hand it back in the input's layout (a view, no copy).
        cdim = class_dim(input)
        ctx.grad = grad.reshape(input.movedim(cdim, -1).shape).movedim(-1, cdim)
        ctx.per_row = per_row
        return loss

    @staticmethod
    def backward(ctx, grad_output: Tensor):  # type: ignore[override]
        V.refuse_double_backward("fused_cross_entropy")
        grad = ctx.grad
        if grad is None:
            raise RuntimeError(
                "fused_cross_entropy's backward can run only once after loss.backward(): its gradient was "
                "computed in the forward pass and handed over without a copy; recompute the loss"
            )
        if ctx.per_row:
            cdim = class_dim(grad)
            return grad * grad_output.unsqueeze(cdim).to(grad.dtype), None, None, None
        if torch.compiler.is_compiling():  # a graph has no handover (and no host sync): the product, fused
            return grad * grad_output.to(grad.dtype), None, None, None
        if bool(grad_output != 1):
            return grad * grad_output.to(grad.dtype), None, None, None
        ctx.grad = None
        return grad, None, None, None


def _check_inplace(input: Tensor, logits: Tensor) -> None:
    base = input._base if input._base is not None else input
    if base.is_leaf and base.requires_grad:
        raise ValueError(
            "Expected argument `input` to be an activation (a non-leaf tensor) when inplace=True, because the "
            "gradient overwrites its storage, but got a leaf tensor that requires grad (or a view of one)"
        )
    if torch.compiler.is_compiling():  # no storage to compare in a graph; the compiler orders the writes
        return
    if not logits.is_contiguous() or (logits.numel() and logits.data_ptr() != input.data_ptr()):
        raise ValueError(
            "Expected argument `input` to be contiguous with the class dimension last in memory when "
            "inplace=True (2-d contiguous, or channels-last N-d), so that the gradient can overwrite it, "
            f"but got shape {tuple(input.shape)} with strides {input.stride()}"
        )


def fused_cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    convention: str = "uniform",
    prior: Tensor | None = None,
    inplace: bool = False,
    chunk_size: int | None = None,
    backend: str = "auto",
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_z_loss: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""Label-smoothed cross-entropy with the gradient produced during the forward pass.

    .. math::
        \ell_i = m_i\,\mathrm{lse}(z_i) - a_i\,z_{i,y_i} - b_i\,(z_i\cdot v_i), \qquad
        \nabla_{z_i} = m_i\,\mathrm{softmax}(z_i) - a_i\,e_{y_i} - b_i\,v_i

    with the coefficients of :mod:`labelsmooth.targets`: the same values and gradients as
    :func:`labelsmooth.cross_entropy`, whose arguments it takes. Each row's gradient is final once
    computed (the "mean" denominator is known from the targets); backward multiplies it by grad_output.

    Memory: a gradient buffer of the logits' size, or none with ``inplace=True``, which writes the
    gradient into the input's storage: **the logits are destroyed**. The input must then be an activation
    (not a leaf requiring grad), contiguous with the class dimension last in memory, and not saved by
    another autograd node (autograd then raises at backward). Without a gradient to compute (no grad mode,
    or an input that does not require grad) only the loss is computed and nothing is overwritten.
    ``loss.backward()`` hands the buffer over without a copy: a second backward through the same graph
    raises; other upstream gradients get a scaled copy. Class indices outside [0, C) raise ValueError
    once the kernel has run (with ``inplace=True`` the logits are overwritten by then).

    Under ``torch.compile`` (fullgraph works, forward and backward): the class-index and prior checks are
    assertions inside the graph (RuntimeError naming the argument, without the offending value, which
    would need a host sync); backward multiplies the stored gradient by grad_output (a graph has no
    buffer handover); the storage checks of ``inplace=True`` are skipped (the compiler orders the
    writes); ``backend="compiled"`` traces its chunk computation into the caller's graph, all rows at once.

    Args:
        input: logits, shape (C,), (N, C) or (N, C, d1, ..., dk).
        target: class indices of the input's shape without C (or ``ignore_index``), or probabilities.
        weight, ignore_index, reduction, label_smoothing, convention, prior: as
            :func:`labelsmooth.cross_entropy`.
        inplace: write the gradient into the input's buffer (destroys the logits).
        chunk_size: rows per chunk; None for the backend's default.
        backend: "auto", "torch", "triton" or "compiled" (:func:`labelsmooth.kernels.select_backend`).
        z_loss, softcap, return_z_loss: as :func:`labelsmooth.cross_entropy` (the gradient gains
            2λ·lse·softmax and the chain rule 1 − tanh²(z/c)), on every backend.

    Returns:
        The loss in the input's dtype: a scalar, or per-element for ``reduction="none"``; with
        ``return_z_loss`` the pair (loss, z-loss part), the second without a gradient (for logging).

    Example:
        >>> import torch, labelsmooth
        >>> z = torch.randn(5, 7, dtype=torch.float64, requires_grad=True); y = torch.tensor([0, 6, 2, 2, 1])
        >>> loss = labelsmooth.fused_cross_entropy(z, y, label_smoothing=0.1, convention="others", chunk_size=2)
        >>> ref = labelsmooth.cross_entropy(z, y, label_smoothing=0.1, convention="others")
        >>> torch.allclose(loss, ref)
        True
        >>> loss.backward(); torch.allclose(z.grad, torch.autograd.grad(ref, z)[0])
        True
    """
    args = V.check_cross_entropy_args(
        input, target, weight, ignore_index, reduction, label_smoothing, convention, prior, check_range=False
    )  # the target values are checked once the kernel is queued (below)
    for name, value in (("target", target), ("weight", weight), ("prior", prior)):
        V.check_constant(name, value, "fused_cross_entropy")
    inplace = V.check_bool("inplace", inplace)
    chunk_size = V.check_chunk_size(chunk_size)
    z_loss = V.check_z_loss(z_loss)
    softcap = V.check_softcap(softcap)
    return_z_loss = V.check_bool("return_z_loss", return_z_loss)
    extra = z_loss != 0.0 or softcap is not None
    logits = args.logits
    kernel = select_backend(backend, logits)
    needs_grad = torch.is_grad_enabled() and input.requires_grad
    if inplace and needs_grad:
        _check_inplace(input, logits)
    logits = logits if logits.is_contiguous() else logits.contiguous()
    dtype = compute_dtype(input.dtype)
    M, K = logits.shape
    with torch.no_grad():
        c = coefficients(args, dtype)
        denominator = c.row_weight.sum() if not args.soft else torch.tensor(float(M), dtype=dtype)
        grad_scale = None
        if needs_grad:
            scale = mean_scale(denominator) if args.reduction == "mean" else 1.0
            grad_scale = torch.as_tensor(scale, dtype=dtype, device=input.device).expand(M)
        z_rows = torch.zeros(M, dtype=dtype, device=input.device) if return_z_loss else None
        terms = {}  # without the terms every backend runs its plain contract, as before they existed
        if extra or return_z_loss:
            terms = dict(z_loss=z_loss, softcap=softcap, z_rows=z_rows)
        row, grad = kernel.loss_and_grad(
            logits.detach(), c, grad_scale, inplace=inplace, chunk_size=chunk_size, **terms
        )
        loss = reduce_rows(row, args.reduction, denominator, args.out_shape)
    out = loss if grad is None else _PrecomputedGrad.apply(input, loss, grad, args.reduction == "none")
    out = out.to(input.dtype)
    if not args.soft:  # last: on a GPU its one host sync waits for the work queued above, not before it
        V.check_target_range(args.target, K, ignore_index)
    if return_z_loss:
        return out, reduce_rows(z_rows, args.reduction, denominator, args.out_shape).to(input.dtype)
    return out


__all__ = ["fused_cross_entropy"]
