r"""Label-smoothed cross-entropy with the classes split across ranks (vocab / tensor parallelism), exact.

Each rank of a process group holds a contiguous slice of the K classes, in rank order, of any (also
unequal) size: rank r holds classes ``[o_r, o_{r+1})``. The loss is the one of
:func:`labelsmooth.cross_entropy` on the full logits, through the shared linear form of
:mod:`labelsmooth.targets` computed with the *global* K:

.. math::
    \ell_i = m_i\,\mathrm{lse}(z_i) - a_i\,z_{i,y_i} - b_i\,(z_i\cdot v), \qquad
    \nabla_{z_i}\ell_i = m_i\,\mathrm{softmax}(z_i) - a_i\,e_{y_i} - b_i\,v .

Every term is a sum over classes, so each rank sums over its slice and all-reduces combine the slices:
an all-reduce MAX of the slices' log-sum-exp, then one all-reduce SUM of three numbers per row
(exp(lse_r − max), the target logit, which one rank owns and the others contribute 0 to, and the
smoothing sum :math:`z_i\cdot v` over the slice). That is O(N) numbers per call; the logits never
move. The backward needs no communication: once lse is known, the gradient of the local slice is local.

The z-loss λ·lse² (PaLM) and logit softcapping x = c·tanh(z/c) (Gemma 2) of :func:`labelsmooth.cross_entropy`
need nothing more: the cap is elementwise, so each rank caps its own slice before the sums above, and
the z-loss is a function of the combined (global) lse, added to the loss and to the softmax's weight in
the gradient (m_i → m_i + 2λ·lse_i), times the chain rule 1 − tanh²(z/c) on the local slice
(docs/theory.md §9).
The linear variant takes the local rows of the output head and works in row chunks, so the local
logits are never stored whole.

Megatron-LM's vocab-parallel cross-entropy instead uses the partition's vocabulary size and the mean of
the log-probabilities over the partition for the smoothing term, which is wrong when the tensor-parallel
size is above 1; docs/distributed.md measures that error and cites the upstream reports.

Without an initialised process group (and ``group=None``) the functions run on one process, world size 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from labelsmooth import _validation as V
from labelsmooth._common import class_dim, compute_dtype, flatten_classes_last, reduce_rows
from labelsmooth.kernels import torch_backend as T
from labelsmooth.targets import index_target_coefficients

__all__ = ["global_mean_denominator", "vocab_parallel_cross_entropy", "vocab_parallel_linear_cross_entropy"]


# --------------------------------------------------------------------------------------------------
# The process group


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _rank_and_world(group) -> tuple[int, int]:
    if not _distributed():
        if group is not None:
            raise ValueError(
                f"Expected argument `group` to be None when torch.distributed is not initialised, but got {group!r}"
            )
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def _all_reduce(tensor: Tensor, op, group) -> Tensor:
    """In-place all-reduce, a no-op on one process."""
    if _distributed() and dist.get_world_size(group) > 1:
        dist.all_reduce(tensor, op=op, group=group)
    return tensor


def _class_bounds(local_size: int, class_offsets: Sequence[int] | None, group, device) -> tuple[int, int, int]:
    """(start, end, K) of this rank's slice: from ``class_offsets`` or an all-gather of the local sizes."""
    rank, world = _rank_and_world(group)
    if class_offsets is None:
        if world == 1:
            offsets = [0, local_size]
        else:
            size = torch.tensor([local_size], dtype=torch.int64, device=device)
            sizes = [torch.empty_like(size) for _ in range(world)]
            dist.all_gather(sizes, size, group=group)
            offsets = [0]
            for s in sizes:
                offsets.append(offsets[-1] + int(s.item()))
    else:
        offsets = V.check_class_offsets(class_offsets, world, rank, local_size)
    sizes = [b - a for a, b in zip(offsets[:-1], offsets[1:])]
    if any(s < 1 for s in sizes):
        raise ValueError(f"Expected every rank to hold at least one class, but got slice sizes {sizes}")
    return offsets[rank], offsets[rank + 1], offsets[-1]


# --------------------------------------------------------------------------------------------------
# The computation: local sums over the slice, one combination across ranks, a local gradient

# Rows per chunk of the linear variant when chunk_size is None: keep a chunk's logits near 2^22 elements
# (16 MiB in float32), whatever the local vocabulary size.
CHUNK_ELEMENTS = 2**22


@dataclass(frozen=True)
class _Slice:
    """One call's rows on this rank: :class:`labelsmooth.kernels.torch_backend.Rows` whose target is the
    local class (clamped into the slice, with ``owned`` marking the rows whose target lies in it), whose
    a, b, m are the global coefficients and whose v is the slice of v; and the process group."""

    rows: T.Rows
    group: object

    def chunk(self, sl: slice) -> _Slice:
        r = self.rows
        z_coef = None if r.z_coef is None else r.z_coef[sl]
        rows = replace(r, target=r.target[sl], a=r.a[sl], b=r.b[sl], m=r.m[sl], owned=r.owned[sl], z_coef=z_coef)
        return replace(self, rows=rows)


def _local_sums(z: Tensor, t: _Slice) -> Tensor:
    """(3, M) sums over the local slice of z (M, V): lse over the slice, z_y (0 if not owned), z · v_slice,
    all of the capped logits c·tanh(z/c) with a softcap."""
    z, _ = T.cap(z, t.rows)
    z_y = T.target_logit(z, t.rows)
    z_v = T.prior_logit(z, t.rows)
    return torch.stack([torch.logsumexp(z, dim=-1), z_y, torch.zeros_like(z_y) if z_v is None else z_v])


def _row_loss_and_lse(local: Tensor, t: _Slice) -> tuple[Tensor, Tensor]:
    """Combine the ranks' (3, M) local sums (two all-reduces of O(M) numbers); row losses and global lse.

    lse = max_r lse_r + log Σ_r exp(lse_r − max_r lse_r); the loss from lse, z_y and z·v as on whole logits.
    """
    smoothing = t.rows.smoothing
    top = _all_reduce(local[0].clone(), dist.ReduceOp.MAX, t.group)  # (M,)
    # a row whose slices are all −inf gives NaN, as on the full logits
    packed = torch.stack([torch.exp(local[0] - top), local[1]] + ([local[2]] if smoothing else []))
    packed = _all_reduce(packed, dist.ReduceOp.SUM, t.group)  # one all-reduce, (2 or 3, M)
    lse = top + torch.log(packed[0])
    return T.loss_terms(lse, packed[1], packed[2] if smoothing else None, t.rows), lse


def _gradient(z: Tensor, lse: Tensor, r: T.Rows, s: Tensor) -> Tensor:
    """(M, V) gradient of Σ_i s_i·ℓ_i for the local slice z (raw logits) once the global lse is known:
    of the capped logits, times the chain rule 1 − tanh²(z/c), with a softcap."""
    x, t = T.cap(z, r)
    g = T.gradient(x, lse, r, s)
    return g if t is None else g.mul_(t.square_().neg_().add_(1.0))


class _VocabParallelCrossEntropy(torch.autograd.Function):
    """Row losses (M,) from local logits (M, V), in the compute dtype. Backward is local."""

    @staticmethod
    def forward(ctx, z: Tensor, t: _Slice) -> Tensor:
        row_loss, lse = _row_loss_and_lse(_local_sums(z, t), t)
        ctx.save_for_backward(z, lse)
        ctx.terms = t
        ctx.mark_non_differentiable(lse)
        return row_loss, lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_row: Tensor, _grad_lse: Tensor | None):
        z, lse = ctx.saved_tensors
        return _gradient(z, lse, ctx.terms.rows, grad_row), None


class _VocabParallelLinearCrossEntropy(torch.autograd.Function):
    """Row losses (M,) from h (M, D), the local head W (V, D) and bias b (V,) or None, by row chunks.

    Only a (chunk, V) block of logits exists at a time; the backward recomputes it. Memory beyond the
    inputs: O(chunk·V + M) in the forward, plus the gradients' size in the backward.
    """

    @staticmethod
    def forward(ctx, h: Tensor, W: Tensor, b: Tensor | None, t: _Slice, chunk: int) -> Tensor:
        M = h.shape[0]
        local = torch.empty(3, M, dtype=h.dtype, device=h.device)
        for i in range(0, M, chunk):
            sl = slice(i, i + chunk)
            local[:, sl] = _local_sums(F.linear(h[sl], W, b), t.chunk(sl))
        row_loss, lse = _row_loss_and_lse(local, t)
        ctx.save_for_backward(h, W, b, lse)
        ctx.terms, ctx.chunk = t, chunk
        ctx.mark_non_differentiable(lse)
        return row_loss, lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_row: Tensor, _grad_lse: Tensor | None):
        h, W, b, lse = ctx.saved_tensors
        t, chunk = ctx.terms, ctx.chunk
        need_h, need_W, need_b = ctx.needs_input_grad[:3]
        dh = torch.empty_like(h) if need_h else None
        dW = torch.zeros_like(W) if need_W else None
        db = torch.zeros_like(b) if need_b else None
        for i in range(0, h.shape[0], chunk):
            sl = slice(i, i + chunk)
            gz = _gradient(F.linear(h[sl], W, b), lse[sl], t.chunk(sl).rows, grad_row[sl])  # (chunk, V)
            if need_h:
                dh[sl] = gz @ W  # this rank's part; summed over ranks outside (_AllReduceGradient)
            if need_W:
                dW.addmm_(gz.T, h[sl])
            if need_b:
                db += gz.sum(0)
        return dh, dW, db, None, None


def _slice_terms(
    local_shape: Sequence[int], target: Tensor, args: _Args, *, dtype: torch.dtype, device: torch.device
) -> tuple[_Slice, Tensor, V.LossOptions]:
    """This rank's slice of the classes, the global checks, and the slice's rows: shared by both losses.

    ``local_shape`` is the shape of the local logits (classes in dimension 1, or 0 for (V,)). The slice
    comes from ``class_offsets`` or an all-gather of the local sizes; the target, weight and prior are
    then checked against the global K as if the logits were whole. Returns the rows, the row weights (M,)
    and the checked options.
    """
    cdim = 0 if len(local_shape) == 1 else 1
    V_local = local_shape[cdim]
    start, _, K = _class_bounds(V_local, args.class_offsets, args.group, device)
    full_shape = list(local_shape)
    full_shape[cdim] = K
    o, _ = V.check_loss_options(
        full_shape, target, args.weight, args.ignore_index, args.reduction, args.label_smoothing, args.convention,
        args.prior,
    )  # fmt: skip
    for name, value in (("weight", o.weight), ("prior", o.prior)):
        V.check_constant(name, value, "the vocab-parallel losses")
    c = index_target_coefficients(
        target.reshape(-1), K, o.label_smoothing, convention=o.convention, prior=o.prior,
        weight=o.weight, ignore_index=o.ignore_index, dtype=dtype,
    )  # fmt: skip
    local = c.safe_target - start
    z_coef = None if args.z_loss == 0.0 else (c.target != c.ignore_index).to(dtype) * args.z_loss
    rows = T.Rows(
        target=local.clamp(0, V_local - 1).unsqueeze(1), a=c.true_coef, b=c.prior_coef, m=c.row_mass,
        v=None if c.constant_prior is not None else c.prior_weighted[start : start + V_local],
        v_const=c.constant_prior, smoothing=c.smoothing, owned=(local >= 0) & (local < V_local),
        z_coef=z_coef, softcap=args.softcap,
    )  # fmt: skip
    return _Slice(rows, args.group), c.row_weight, o


@dataclass(frozen=True)
class _Args:
    """The options of a vocab-parallel loss, as passed (checked by :func:`_slice_terms`)."""

    group: object
    label_smoothing: float
    convention: str
    prior: Tensor | None
    ignore_index: int
    reduction: str
    weight: Tensor | None
    class_offsets: Sequence[int] | None
    z_loss: float = 0.0  # checked by the public functions
    softcap: float | None = None


def vocab_parallel_cross_entropy(
    local_logits: Tensor,
    target: Tensor,
    *,
    group=None,
    label_smoothing: float = 0.0,
    convention: str = "uniform",
    prior: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    weight: Tensor | None = None,
    class_offsets: Sequence[int] | None = None,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_z_loss: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r""":func:`labelsmooth.cross_entropy` on logits whose classes are split across the ranks of ``group``.

    .. math::
        \ell_i = m_i\,\mathrm{lse}(z_i) - a_i\,z_{i,y_i} - b_i\,(z_i\cdot v) + \lambda_i\,\mathrm{lse}(z_i)^2

    with lse, :math:`z_{i,y_i}` and :math:`z_i\cdot v` each summed over the ranks' slices by all-reduce
    (a MAX of the slices' lse, then one SUM of three numbers per row), and :math:`a, b, m, v` from
    :func:`labelsmooth.targets.index_target_coefficients` with the global K (module docstring). The
    value and the gradient of the local logits equal those of :func:`labelsmooth.cross_entropy` on the
    concatenated logits; the loss is the same on every rank. The backward is local (no communication).

    Every rank must pass the same ``target``, ``prior`` and ``weight`` (not checked: that would cost
    communication). ``weight`` and ``prior`` get no gradient (one that requires grad is refused). Class-probability targets are not
    supported. Double backward is not supported.

    Args:
        local_logits: this rank's slice of the logits: shape (V_r,), (N, V_r) or (N, V_r, d1, ..., dk),
            classes in dimension 1 as in :func:`torch.nn.functional.cross_entropy`; floating point.
        target: class indices in [0, K) or ``ignore_index``, global numbering; shape (), (N,) or
            (N, d1, ..., dk).
        group: the process group the classes are split over; the default group when None, and a single
            process (world size 1) when torch.distributed is not initialised.
        label_smoothing: ε in [0, 1].
        convention: "uniform" or "others" (:mod:`labelsmooth.targets`).
        prior: optional full (K,) prior π, the same on every rank.
        ignore_index: target value that contributes nothing.
        reduction: "mean" (divides by Σ w_{y_i} over non-ignored rows, as torch), "sum" or "none".
        weight: optional full (K,) class weights, the same on every rank.
        class_offsets: optional world_size + 1 boundaries: rank r holds classes
            [class_offsets[r], class_offsets[r+1]). When None they come from an all-gather of the local
            sizes (one extra tiny collective); when given, only this rank's slice is checked against them.
        z_loss, softcap, return_z_loss: as :func:`labelsmooth.cross_entropy`: λ of the z-loss λ·lse² on
            the rows whose target is not ignored, with the global lse; the cap c of z ← c·tanh(z/c),
            applied by each rank to its own slice; and whether to also return the z-loss part.

    Returns:
        The loss, in the logits' dtype (half precision is computed in float32): a scalar, or the target's
        shape for ``reduction="none"``; with ``return_z_loss`` the pair (loss, z-loss part), the second
        reduced like the first and without a gradient.

    Example:
        >>> import torch, labelsmooth
        >>> from labelsmooth.distributed import vocab_parallel_cross_entropy
        >>> z = torch.randn(4, 6, dtype=torch.float64); y = torch.tensor([0, 5, 2, -100])
        >>> # on one process (no process group) the slice is the whole vocabulary
        >>> loss = vocab_parallel_cross_entropy(z, y, label_smoothing=0.1, convention="others")
        >>> torch.allclose(loss, labelsmooth.cross_entropy(z, y, label_smoothing=0.1, convention="others"))
        True
    """
    z_loss, softcap = V.check_z_loss(z_loss), V.check_softcap(softcap)
    return_z_loss = V.check_bool("return_z_loss", return_z_loss)
    target = V.check_index_target(target, None, where="the vocab-parallel losses")
    V.check_logits(local_logits, "local_logits")
    args = _Args(
        group, label_smoothing, convention, prior, ignore_index, reduction, weight, class_offsets, z_loss, softcap
    )
    z = flatten_classes_last(local_logits, class_dim(local_logits)).to(compute_dtype(local_logits.dtype))
    terms, row_weight, o = _slice_terms(local_logits.shape, target, args, dtype=z.dtype, device=local_logits.device)
    row_loss, lse = _VocabParallelCrossEntropy.apply(z, terms)
    return _finish(row_loss, lse, terms, o.reduction, row_weight.sum(), target.shape, local_logits.dtype, return_z_loss)


def _finish(
    row_loss: Tensor, lse: Tensor, terms: _Slice, reduction: str, denominator: Tensor, shape: torch.Size,
    dtype: torch.dtype, return_z_loss: bool,
) -> Tensor | tuple[Tensor, Tensor]:  # fmt: skip
    """The reduced loss in ``dtype``, and with ``return_z_loss`` the reduced z-loss part (no gradient)."""
    loss = reduce_rows(row_loss, reduction, denominator, shape).to(dtype)
    if not return_z_loss:
        return loss
    return loss, reduce_rows(T.z_loss_rows(lse, terms.rows), reduction, denominator, shape).to(dtype)


class _AllReduceGradient(torch.autograd.Function):
    """Identity forward; all-reduce SUM of the gradient backward (Megatron's copy-to-parallel-region)."""

    @staticmethod
    def forward(ctx, x: Tensor, group) -> Tensor:
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return _all_reduce(grad.contiguous().clone(), dist.ReduceOp.SUM, ctx.group), None


def vocab_parallel_linear_cross_entropy(
    input: Tensor,
    local_weight: Tensor,
    target: Tensor,
    *,
    local_bias: Tensor | None = None,
    group=None,
    label_smoothing: float = 0.0,
    convention: str = "uniform",
    prior: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    weight: Tensor | None = None,
    class_offsets: Sequence[int] | None = None,
    chunk_size: int | None = None,
    z_loss: float = 0.0,
    softcap: float | None = None,
    return_z_loss: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""Linear head plus :func:`vocab_parallel_cross_entropy`, with the head's rows split across ranks.

    .. math::
        z^{(r)} = h\,W_r^\top + b_r, \qquad \ell = \text{vocab\_parallel\_cross\_entropy}(z^{(r)}, y)

    Rank r holds the rows ``W_r`` (V_r, D) of the full (K, D) head for its classes, and optionally its
    bias slice ``b_r``. The input h is replicated: every rank passes the same (…, D) activations. Its
    gradient is summed over the ranks by an all-reduce in the backward, so every rank receives the full
    input gradient :math:`\sum_r \nabla_{z^{(r)}}\ell\, W_r` (as Megatron's column-parallel head does).
    ``local_weight`` and ``local_bias`` receive the gradients of their own rows only.

    The local logits are computed ``chunk_size`` rows at a time and never stored whole: the forward keeps
    three numbers per row, the backward recomputes each chunk's logits (one more matmul per chunk). The
    communication is the same two all-reduces as :func:`vocab_parallel_cross_entropy`, after all chunks,
    plus the all-reduce of the input gradient.

    Args:
        input: activations h of shape (..., D), the same on every rank.
        local_weight: (V_r, D) rows of the head for this rank's classes.
        target: class indices of shape (...), global numbering, or ``ignore_index``.
        local_bias: optional (V_r,) bias slice.
        group, label_smoothing, convention, prior, ignore_index, reduction, weight, class_offsets: as in
            :func:`vocab_parallel_cross_entropy`; ``weight`` is the (K,) class weight, not the head.
        chunk_size: rows per chunk; None: as many as keep a chunk near ``CHUNK_ELEMENTS`` = 2^22 logits.
        z_loss, softcap, return_z_loss: as in :func:`vocab_parallel_cross_entropy` (the cap applies to
            each chunk's logits, in the forward sums and in the recomputed backward).

    Returns:
        The loss, in the input's dtype: a scalar, or the target's shape for ``reduction="none"``; with
        ``return_z_loss`` the pair (loss, z-loss part).

    Example:
        >>> import torch, torch.nn.functional as F, labelsmooth
        >>> from labelsmooth.distributed import vocab_parallel_linear_cross_entropy
        >>> h = torch.randn(5, 3, dtype=torch.float64); W = torch.randn(7, 3, dtype=torch.float64)
        >>> y = torch.tensor([1, 6, 0, 3, 3])
        >>> loss = vocab_parallel_linear_cross_entropy(h, W, y, label_smoothing=0.2)
        >>> torch.allclose(loss, labelsmooth.cross_entropy(F.linear(h, W), y, label_smoothing=0.2))
        True
    """
    z_loss, softcap = V.check_z_loss(z_loss), V.check_softcap(softcap)
    return_z_loss = V.check_bool("return_z_loss", return_z_loss)
    V.check_index_target(target, None, where="the vocab-parallel losses")
    V.check_logits(input, "input")
    V.check_linear_head(input, local_weight, local_bias, names=("local_weight", "local_bias"), rows="V_local")
    target = V.check_index_target(target, input.shape[:-1], where="the vocab-parallel losses")
    V_local = local_weight.shape[0]
    chunk_size = V.check_chunk_size(chunk_size) or T.default_chunk_size(target.numel(), V_local, CHUNK_ELEMENTS)
    dtype = compute_dtype(input.dtype)
    h = _AllReduceGradient.apply(input.reshape(-1, input.shape[-1]), group).to(dtype)  # (M, D)
    args = _Args(
        group, label_smoothing, convention, prior, ignore_index, reduction, weight, class_offsets, z_loss, softcap
    )
    # the rows' logits as if whole: (M, K) for the flattened target
    terms, row_weight, o = _slice_terms((target.numel(), V_local), target.reshape(-1), args, dtype=dtype,
                                        device=input.device)  # fmt: skip
    b = None if local_bias is None else local_bias.to(dtype)
    row_loss, lse = _VocabParallelLinearCrossEntropy.apply(h, local_weight.to(dtype), b, terms, chunk_size)
    return _finish(row_loss, lse, terms, o.reduction, row_weight.sum(), target.shape, input.dtype, return_z_loss)


def global_mean_denominator(
    target: Tensor, *, weight: Tensor | None = None, ignore_index: int = -100, group=None
) -> Tensor:
    r"""Σ w_{y_i} over the non-ignored targets of *all* ranks: the denominator of the full-batch 'mean'.

    .. math::
        D = \sum_{r} \sum_{i \in \text{rank } r,\ y_i \ne \text{ignore}} w_{y_i}

    For data parallelism (DDP, FSDP), where each rank holds different rows: the full-batch mean loss is
    :math:`\sum_r S_r / D` with :math:`S_r` the rank's ``reduction="sum"`` loss. DDP *averages* gradients
    over the W ranks, so each rank should backpropagate ``W * S_r / D`` (docs/distributed.md). One
    all-reduce of one number; without a process group it is the local sum.

    Args:
        target: this rank's class indices, any shape.
        weight: optional (K,) class weights (None: every target counts 1).
        ignore_index: target value that is not counted.
        group: the data-parallel process group (default group when None).

    Returns:
        A 0-dim tensor: float64 without ``weight``, else in the weight's dtype.

    Example:
        >>> import torch
        >>> from labelsmooth.distributed import global_mean_denominator
        >>> global_mean_denominator(torch.tensor([2, -100, 0]), weight=torch.tensor([0.5, 1.0, 2.0]))
        tensor(2.5000)
    """
    target = V.check_index_target(target, None, where="global_mean_denominator").reshape(-1)
    ignore_index = V.check_ignore_index(ignore_index)
    _rank_and_world(group)
    if weight is not None and (not isinstance(weight, Tensor) or weight.dim() != 1 or not weight.is_floating_point()):
        raise TypeError(
            "Expected argument `weight` to be a 1-D floating-point tensor of class weights, "
            f"but got {getattr(weight, 'shape', type(weight).__name__)}"
        )
    V.check_target_range(target, None if weight is None else len(weight), ignore_index)
    keep = target != ignore_index
    if weight is None:
        total = keep.sum().to(torch.float64)
    else:
        total = weight.detach()[target[keep]].sum()
    return _all_reduce(total.clone(), dist.ReduceOp.SUM, group)
