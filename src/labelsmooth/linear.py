r"""Fused linear head + label-smoothed cross-entropy for large vocabularies.

The logits :math:`z = hW^\top + b` are never materialised beyond ``chunk_size × V``. Smoothing costs no extra
pass over the vocabulary: the smoothing term is linear in z, so by the rank-one identity

.. math::
    z_i\cdot v = h_i\cdot(W^\top v) + b\cdot v,

its value needs one (D,) vector :math:`u = W^\top v`, and its gradient :math:`-s_i b_i v` contributes
rank-one terms: :math:`-r\,u^\top` to the input, :math:`-v\,(r^\top h)` to the weight and
:math:`-(\sum_i r_i)\,v` to the bias, with :math:`r_i = s_i b_i`. Each chunk therefore only runs the
plain cross-entropy part (softmax and the true-class term), the same work as ε = 0.

Two ways to run a chunk. The torch path (the CPU default, :func:`_chunked`) computes in the compute
dtype with the chunk pieces of :mod:`labelsmooth.kernels.torch_backend` and the rank-one terms above. The
Triton path (the CUDA default, :func:`_chunked_triton`) keeps the matrix products in the input's dtype
(cuBLAS, tensor cores for bfloat16) and runs the fused Triton kernel of
:mod:`labelsmooth.kernels.triton_backend` in place on each chunk's logits, which it overwrites with
their gradient (as Liger-Kernel does); that kernel takes the smoothing term inside its two sweeps over
the row at no extra pass, so this path needs no rank-one updates (they would cost one more pass over
the (V, D) weight gradient). It runs on CPU tensors too under ``TRITON_INTERPRET=1`` (how it is tested).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from labelsmooth import _validation as V
from labelsmooth._common import compute_dtype, mean_scale, reduce_rows
from labelsmooth.kernels import select_backend, triton_backend
from labelsmooth.kernels import torch_backend as T
from labelsmooth.targets import Coefficients, index_target_coefficients

#: Logits per chunk of the Triton path by default (2^25: 256 rows at V = 131,072, 64 MiB in bfloat16); a
#: guess until measured on a GPU (benchmarks/gpu_check.py times chunks of 1,024 and 2,048 rows next to it).
TRITON_CHUNK_ELEMENTS = 1 << 25


@dataclass(frozen=True)
class _Head:
    """The problem of one call: h (M, D), W (V, D), bias (V,) or None (in the compute dtype for the torch
    path, in the products' dtype for the Triton path), the coefficients of the M rows (compute dtype),
    the reduction and its denominator, rows per chunk, and the output shape of reduction="none"; the
    z-loss coefficient, the logit cap and the buffer of the z-loss parts; ``triton``: which path."""

    h: Tensor
    W: Tensor
    bias: Tensor | None
    coefs: Coefficients
    reduction: str
    denominator: Tensor
    chunk: int
    out_shape: torch.Size
    z_loss: float = 0.0
    softcap: float | None = None
    z_rows: Tensor | None = None  # (M,), written with each row's z-loss part by the forward pass
    triton: bool = False

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype: of the row losses, the gradient factors and the kernel's arithmetic."""
        return compute_dtype(self.h.dtype)


@dataclass(frozen=True)
class _Dtypes:
    """The dtypes (and the input's shape) the gradients are returned in."""

    input_shape: torch.Size
    input: torch.dtype
    weight: torch.dtype
    bias: torch.dtype | None


def _chunked(
    p: _Head, grad_scale: Tensor | None, z_rows: Tensor | None = None
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """Row losses (M,) and, with ``grad_scale`` (M,), the gradients of Σ_i grad_scale_i·ℓ_i for h, W, bias;
    ``z_rows`` (M,), if given, receives each row's z-loss part.

    With a softcap the smoothing term is not linear in h any more: each chunk then computes z·v and the
    −s·b·v gradient on its capped logits instead of through the rank-one identity.
    """
    if torch.compiler.is_compiling():  # one opaque node in the caller's graph (see _linear_head)
        return _chunked_in_graph(p, grad_scale, z_rows)
    if p.triton:
        return _chunked_triton(p, grad_scale, z_rows)
    h, W, bias, c = p.h, p.W, p.bias, p.coefs
    M, _ = h.shape
    need_grads = grad_scale is not None
    v = c.prior_weighted
    row = torch.empty(M, dtype=h.dtype, device=h.device)
    grad_h = torch.empty_like(h) if need_grads else None
    grad_W = torch.zeros_like(W) if need_grads else None
    grad_b = torch.zeros_like(bias) if (need_grads and bias is not None) else None
    # the smoothing term through the rank-one identity (module docstring): z·v = h·u + bias·v, u = Wᵀv
    rank_one = c.smoothing and p.softcap is None
    u = v @ W if rank_one else None
    bv = bias @ v if (rank_one and bias is not None) else 0.0
    for start in range(0, M, p.chunk):
        sl = slice(start, min(start + p.chunk, M))
        hc = h[sl]
        z = torch.addmm(bias, hc, W.t()) if bias is not None else hc @ W.t()  # (c, V): the only V-wide buffer
        r = T.rows(c, sl, h.dtype, v=v, z_loss=p.z_loss, softcap=p.softcap)
        z_v = hc @ u + bv if rank_one else None
        zr = None if z_rows is None else z_rows[sl]
        if not need_grads:
            row[sl] = T.chunk_loss(z, r, z_v=z_v, z_rows=zr)
            continue
        row[sl] = T.chunk_loss_and_grad(z, z, r, grad_scale[sl], z_v=z_v, prior_grad=not rank_one, z_rows=zr)
        torch.mm(z, W, out=grad_h[sl])
        grad_W.addmm_(z.t(), hc)
        if grad_b is not None:
            grad_b.add_(z.sum(0))
    if rank_one and need_grads:  # the gradient's −s·b·v term, rank one
        r = grad_scale * c.prior_coef  # (M,)
        grad_h.addr_(r, u, alpha=-1.0)
        grad_W.addr_(v, r @ h, alpha=-1.0)
        if grad_b is not None:
            grad_b.sub_(v * r.sum())
    return row, grad_h, grad_W, grad_b


def _chunk_coefficients(c: Coefficients, sl: slice) -> Coefficients:
    """The coefficients of the rows ``sl`` (views, no copies)."""
    v = c.prior_weighted[sl] if c.prior_weighted.dim() == 2 else c.prior_weighted
    return replace(
        c, true_coef=c.true_coef[sl], prior_coef=c.prior_coef[sl], prior_weighted=v, row_mass=c.row_mass[sl],
        row_weight=c.row_weight[sl], safe_target=c.safe_target[sl], target=c.target[sl],
    )  # fmt: skip


def _chunked_triton(
    p: _Head, grad_scale: Tensor | None, z_rows: Tensor | None = None
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """:func:`_chunked` by cuBLAS products in the input's dtype and the Triton kernel in place per chunk.

    Per chunk of rows: z = h_c Wᵀ + bias (the one (chunk, V) buffer); the kernel writes each row's loss
    (and z-loss part) and overwrites z with g = ∂(Σ s_i ℓ_i)/∂z, computed in float32 (float64 for float64)
    and rounded once to z's dtype; then grad_h_c = g W and grad_W += gᵀ h_c (cuBLAS, accumulating in the
    weight's dtype, one rounding per chunk in bfloat16, as Liger-Kernel), grad_bias += Σ_rows g (compute
    dtype). The smoothing term, the z-loss and the cap are all inside the kernel.
    """
    h, W, bias, c = p.h, p.W, p.bias, p.coefs
    M, _ = h.shape
    need_grads = grad_scale is not None
    row = torch.empty(M, dtype=p.dtype, device=h.device)
    grad_h = torch.empty_like(h) if need_grads else None
    grad_W = torch.zeros_like(W) if need_grads else None
    grad_b = torch.zeros(bias.shape, dtype=p.dtype, device=h.device) if (need_grads and bias is not None) else None
    for start in range(0, M, p.chunk):
        sl = slice(start, min(start + p.chunk, M))
        hc = h[sl]
        z = torch.addmm(bias, hc, W.t()) if bias is not None else hc @ W.t()  # (c, V): the only V-wide buffer
        row[sl], g = triton_backend.loss_and_grad(
            z, _chunk_coefficients(c, sl), None if grad_scale is None else grad_scale[sl], inplace=True,
            z_loss=p.z_loss, softcap=p.softcap, z_rows=None if z_rows is None else z_rows[sl],
        )  # fmt: skip
        if not need_grads:
            continue
        torch.mm(g, W, out=grad_h[sl])
        grad_W.addmm_(g.t(), hc)
        if grad_b is not None:
            grad_b.add_(g.sum(0, dtype=p.dtype))
    return row, grad_h, grad_W, grad_b


def _absent(t: Tensor) -> Tensor:
    """The empty stand-in of an output :func:`_linear_head` does not compute (a custom op returns no None)."""
    return t.new_empty(0)


@torch.library.custom_op("labelsmooth::linear_head", mutates_args=())
def _linear_head(
    h: Tensor, W: Tensor, bias: Tensor | None, true_coef: Tensor, prior_coef: Tensor, prior_weighted: Tensor,
    row_mass: Tensor, row_weight: Tensor, safe_target: Tensor, target: Tensor, grad_scale: Tensor | None,
    ignore_index: int, smoothing: bool, constant_prior: float | None, chunk: int, z_loss: float,
    softcap: float | None, with_z_rows: bool, triton: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    """:func:`_chunked` as one custom operator: (row losses, z-loss parts, grad_h, grad_W, grad_bias), the
    parts not computed empty.

    Inside a caller's ``torch.compile`` graph the chunk loop runs as this one opaque node, as in eager
    mode: each chunk's (chunk, V) logits are freed before the next one is made. Traced instead, the loop
    is unrolled and functionalised, and the compiler may keep every chunk's logits alive at once.
    """
    coefs = Coefficients(
        true_coef=true_coef, prior_coef=prior_coef, prior_weighted=prior_weighted, row_mass=row_mass,
        row_weight=row_weight, safe_target=safe_target, target=target, num_classes=W.shape[0],
        ignore_index=ignore_index, smoothing=smoothing, constant_prior=constant_prior,
    )  # fmt: skip
    p = _Head(
        h=h, W=W, bias=bias, coefs=coefs, reduction="sum", denominator=row_weight.new_ones(()), chunk=chunk,
        out_shape=torch.Size([h.shape[0]]), z_loss=z_loss, softcap=softcap, triton=triton,
    )  # fmt: skip
    z_rows = torch.zeros(h.shape[0], dtype=p.dtype, device=h.device) if with_z_rows else None
    row, gh, gW, gb = _chunked(p, grad_scale, z_rows)
    return (
        row, _absent(row) if z_rows is None else z_rows, _absent(h) if gh is None else gh,
        _absent(W) if gW is None else gW, _absent(row) if gb is None else gb,
    )  # fmt: skip


@_linear_head.register_fake
def _(h, W, bias, true_coef, prior_coef, prior_weighted, row_mass, row_weight, safe_target, target, grad_scale,
      ignore_index, smoothing, constant_prior, chunk, z_loss, softcap, with_z_rows, triton):  # fmt: skip
    dtype = compute_dtype(h.dtype)
    M = h.shape[0]
    grads = grad_scale is not None
    return (
        h.new_empty(M, dtype=dtype), h.new_empty(M if with_z_rows else 0, dtype=dtype),
        torch.empty_like(h) if grads else h.new_empty(0), torch.empty_like(W) if grads else W.new_empty(0),
        h.new_empty(bias.shape[0] if (grads and bias is not None) else 0, dtype=dtype),
    )  # fmt: skip


def _chunked_in_graph(
    p: _Head, grad_scale: Tensor | None, z_rows: Tensor | None
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """:func:`_chunked` through :func:`_linear_head`, for a graph being compiled."""
    c = p.coefs
    row, zr, gh, gW, gb = _linear_head(
        p.h, p.W, p.bias, c.true_coef, c.prior_coef, c.prior_weighted, c.row_mass, c.row_weight, c.safe_target,
        c.target, grad_scale, c.ignore_index, c.smoothing, c.constant_prior, p.chunk, p.z_loss, p.softcap,
        z_rows is not None, p.triton,
    )  # fmt: skip
    if z_rows is not None:
        z_rows.copy_(zr)
    if grad_scale is None:
        return row, None, None, None
    return row, gh, gW, None if p.bias is None else gb


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, W, bias, p: _Head):  # type: ignore[override]
        M = p.h.shape[0]
        ctx.dtypes = _Dtypes(input.shape, input.dtype, W.dtype, None if bias is None else bias.dtype)
        if p.reduction == "none":
            # Per-row grad_output is known only in backward, and it weighs the sums over rows in grad_W and
            # grad_b: recompute the chunks there (one more pass of matrix products, no stored logits).
            row, *_ = _chunked(p, None, p.z_rows)
            ctx.head, ctx.grads = p, None
            return row.reshape(p.out_shape)
        scale = mean_scale(p.denominator) if p.reduction == "mean" else 1.0
        grad_scale = torch.as_tensor(scale, dtype=p.dtype, device=p.h.device).expand(M)
        row, gh, gW, gb = _chunked(p, grad_scale, p.z_rows)
        ctx.head, ctx.grads = None, (gh, gW, gb)
        return reduce_rows(row, p.reduction, p.denominator, p.out_shape)

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        V.refuse_double_backward("linear_cross_entropy")
        d = ctx.dtypes
        if ctx.head is not None:
            _, gh, gW, gb = _chunked(ctx.head, grad_output.reshape(-1).to(ctx.head.dtype))
        else:
            if ctx.grads is None:
                raise RuntimeError(
                    "linear_cross_entropy's backward can run only once after loss.backward(): its gradients were "
                    "computed in the forward pass and handed over without a copy; recompute the loss"
                )
            gh, gW, gb = ctx.grads
            if torch.compiler.is_compiling():  # a graph has no handover (and no host sync): the products
                g = grad_output.to(gh.dtype)
                gh, gW, gb = gh * g, gW * g, None if gb is None else gb * g
            elif bool(grad_output != 1):  # a scaled copy; the buffers stay for another backward pass
                g = grad_output.to(gh.dtype)
                gh, gW, gb = gh * g, gW * g, None if gb is None else gb * g
            else:  # loss.backward(): hand the buffers over without a copy
                ctx.grads = None
        return gh.reshape(d.input_shape).to(d.input), gW.to(d.weight), None if gb is None else gb.to(d.bias), None


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
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_z_loss: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""``cross_entropy(linear(input, linear_weight, linear_bias), target, ...)`` without the full logits.

    .. math::
        z_i = W h_i + b, \qquad
        \ell_i = m_i\,\mathrm{lse}(z_i) - a_i\,z_{i,y_i} - b_i\,(h_i\cdot W^\top v + b\cdot v)

    (coefficients: :mod:`labelsmooth.targets`): torch's :func:`torch.nn.functional.linear_cross_entropy`
    signature plus our ``convention``/``prior``/``chunk_size``, with the values and gradients of
    :func:`labelsmooth.cross_entropy` on the materialised logits, which never exist beyond one chunk of
    rows. The gradients of input, ``linear_weight`` and ``linear_bias`` are accumulated in the forward
    pass (for ``reduction="none"``, where they depend on grad_output, backward recomputes the chunks).
    ``loss.backward()`` hands them over without a copy (a second backward raises); other upstream
    gradients get scaled copies. float16/bfloat16 are computed in float32 (on the Triton path the
    matrix products stay in the input's dtype, see below). Class indices only. Under ``torch.compile``
    (fullgraph works) the checks of the targets and prior are assertions inside the graph (RuntimeError
    naming the argument, without the value), the chunk loop is one custom operator
    (``labelsmooth::linear_head``, so a chunk's logits are freed before the next is made, as in eager mode),
    and backward multiplies by grad_output.

    Args:
        input: (N, D) or (..., D) hidden states.
        linear_weight: (V, D).
        target: class indices of shape (N,) or (...), values in [0, V) or ``ignore_index``.
        linear_bias: optional (V,).
        weight, reduction, ignore_index, label_smoothing, convention, prior: as
            :func:`labelsmooth.cross_entropy`.
        chunk_size: rows per chunk; None for about 2**24 logits per chunk (2**25 on the Triton path).
        backend: "auto", "torch" or "triton". "torch" is the chunked PyTorch path (module docstring);
            "triton" runs each chunk's logits through the fused Triton kernel in place, with the matrix
            products in the input's dtype and the weight's gradient accumulated in the weight's dtype; it
            needs CUDA tensors (or ``TRITON_INTERPRET=1`` on CPU tensors, for tests) and raises ValueError
            elsewhere. "auto" takes "triton" for CUDA tensors where Triton can run, else "torch".
        z_loss, softcap, return_z_loss: as :func:`labelsmooth.cross_entropy`. With a softcap the
            smoothing term is computed on each chunk's capped logits (no rank-one shortcut).

    Returns:
        The loss in the input's dtype: a scalar, or shape (...) for ``reduction="none"``; with
        ``return_z_loss`` the pair (loss, z-loss part), the second without a gradient (for logging).

    Example:
        >>> import torch, labelsmooth
        >>> h = torch.randn(6, 4, dtype=torch.float64); W = torch.randn(9, 4, dtype=torch.float64)
        >>> y = torch.tensor([0, 8, 3, 3, -100, 1])
        >>> loss = labelsmooth.linear_cross_entropy(h, W, y, label_smoothing=0.1, chunk_size=4)
        >>> torch.allclose(loss, labelsmooth.cross_entropy(h @ W.T, y, label_smoothing=0.1))
        True
    """
    V.check_logits(input)
    V.check_linear_head(input, linear_weight, linear_bias)
    backend = V.check_choice("backend", backend, ("auto", "torch", "triton"))
    use_triton = select_backend(backend, input) is triton_backend  # raises for "triton" where it cannot run
    chunk_size = V.check_chunk_size(chunk_size)
    z_loss = V.check_z_loss(z_loss)
    softcap = V.check_softcap(softcap)
    return_z_loss = V.check_bool("return_z_loss", return_z_loss)
    for name, value in (("weight", weight), ("prior", prior)):
        V.check_constant(name, value, "linear_cross_entropy")
    vocab, D = linear_weight.shape
    lead = input.shape[:-1]
    M = lead.numel()
    target = V.check_index_target(target, lead, where="linear_cross_entropy")
    options, _ = V.check_loss_options(
        (M, vocab), target.reshape(-1), weight, ignore_index, reduction, label_smoothing, convention, prior
    )
    # the torch path computes everything in the compute dtype; the Triton path keeps the products in the
    # dtype the three tensors promote to (the kernel computes in its compute dtype)
    mm_dtype = input.dtype
    if use_triton:
        for t in (linear_weight, linear_bias):
            mm_dtype = mm_dtype if t is None else torch.promote_types(mm_dtype, t.dtype)
    dtype = compute_dtype(mm_dtype)
    mm_dtype = mm_dtype if use_triton else dtype
    default_chunk = T.default_chunk_size(M, vocab, TRITON_CHUNK_ELEMENTS if use_triton else T.CHUNK_ELEMENTS)
    with torch.no_grad():
        c = index_target_coefficients(
            target.reshape(-1), vocab, options.label_smoothing, convention=options.convention, prior=prior,
            weight=weight, ignore_index=ignore_index, dtype=dtype,
        )  # fmt: skip
        p = _Head(
            h=input.detach().reshape(M, D).to(mm_dtype), W=linear_weight.detach().to(mm_dtype),
            bias=None if linear_bias is None else linear_bias.detach().to(mm_dtype), coefs=c,
            reduction=options.reduction, denominator=c.row_weight.sum(), chunk=chunk_size or default_chunk,
            out_shape=lead, z_loss=z_loss, softcap=softcap,
            z_rows=torch.zeros(M, dtype=dtype, device=input.device) if return_z_loss else None, triton=use_triton,
        )  # fmt: skip
    loss = _LinearCrossEntropy.apply(input, linear_weight, linear_bias, p).to(input.dtype)
    if return_z_loss:
        return loss, reduce_rows(p.z_rows, p.reduction, p.denominator, lead).to(input.dtype)
    return loss
