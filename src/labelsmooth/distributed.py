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
The linear variant takes the local rows of the output head and works in row chunks, so the local
logits are never stored whole.

Megatron-LM's vocab-parallel cross-entropy instead uses the partition's vocabulary size and the mean of
the log-probabilities over the partition for the smoothing term, which is wrong when the tensor-parallel
size is above 1 (NVIDIA/Megatron-LM issues #737 and #7464); docs/distributed.md measures that error.

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
from labelsmooth.losses import compute_dtype, reduce_rows
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
        if isinstance(class_offsets, Tensor):
            class_offsets = class_offsets.tolist()
        offsets = list(class_offsets)
        if any(isinstance(o, bool) or not isinstance(o, int) for o in offsets):
            raise TypeError(f"Expected argument `class_offsets` to be a sequence of integers, but got {offsets!r}")
        if len(offsets) != world + 1:
            raise ValueError(
                f"Expected argument `class_offsets` to hold world_size + 1 = {world + 1} boundaries "
                f"(rank r holds classes [offsets[r], offsets[r+1])), but got {len(offsets)}: {offsets}"
            )
        if offsets[0] != 0:
            raise ValueError(f"Expected argument `class_offsets` to start at 0, but got {offsets}")
        if offsets[rank + 1] - offsets[rank] != local_size:
            raise ValueError(
                f"Expected argument `class_offsets` to give rank {rank} a slice of {local_size} classes "
                f"(the size of its local logits), but got [{offsets[rank]}, {offsets[rank + 1]}) in {offsets}"
            )
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
class _LocalTerms:
    """The per-row coefficients and the local slice of v; none of it requires a gradient.

    Shapes, for M rows and a local slice of V classes:
        row_mass, true_coef, prior_coef: (M,) m_i, a_i, b_i of :class:`labelsmooth.targets.IndexTargetCoefficients`.
        local_prior_weighted: (V,) the slice of v = w ⊙ π.
        owned: (M,) whether y_i lies in this rank's slice; local_target: (M,) y_i − start, clamped into [0, V).
    """

    row_mass: Tensor
    true_coef: Tensor
    prior_coef: Tensor
    local_prior_weighted: Tensor
    owned: Tensor
    local_target: Tensor
    smoothing: bool
    group: object

    def rows(self, sl: slice) -> _LocalTerms:
        """The terms of rows ``sl`` (for chunks)."""
        return replace(
            self, row_mass=self.row_mass[sl], true_coef=self.true_coef[sl], prior_coef=self.prior_coef[sl],
            owned=self.owned[sl], local_target=self.local_target[sl],
        )  # fmt: skip


def _local_sums(z: Tensor, t: _LocalTerms) -> Tensor:
    """(3, M) sums over the local slice of z (M, V): lse over the slice, z_y (0 if not owned), z · v_slice."""
    z_y = torch.where(t.owned, z.gather(1, t.local_target.unsqueeze(1)).squeeze(1), 0.0)
    z_v = z @ t.local_prior_weighted if t.smoothing else torch.zeros_like(z_y)
    return torch.stack([torch.logsumexp(z, dim=-1), z_y, z_v])


def _row_loss_and_lse(local: Tensor, t: _LocalTerms) -> tuple[Tensor, Tensor]:
    """Combine the ranks' (3, M) local sums (two all-reduces of O(M) numbers); row losses and global lse.

    lse = max_r lse_r + log Σ_r exp(lse_r − max_r lse_r);  loss_i = m_i·lse − a_i·z_y − b_i·(z · v).
    """
    top = _all_reduce(local[0].clone(), dist.ReduceOp.MAX, t.group)  # (M,)
    # a row whose slices are all −inf gives NaN, as on the full logits
    packed = torch.stack([torch.exp(local[0] - top), local[1]] + ([local[2]] if t.smoothing else []))
    packed = _all_reduce(packed, dist.ReduceOp.SUM, t.group)  # one all-reduce, (2 or 3, M)
    lse = top + torch.log(packed[0])
    row_loss = t.row_mass * lse - t.true_coef * packed[1]
    if t.smoothing:
        row_loss = row_loss - t.prior_coef * packed[2]
    return row_loss, lse


def _local_grad(z: Tensor, lse: Tensor, grad_row: Tensor, t: _LocalTerms) -> Tensor:
    """g_i · (m_i softmax(z_i) − a_i e_{y_i} − b_i v) on the local slice, (M, V); no communication."""
    grad = torch.exp(z - lse.unsqueeze(-1)) * (grad_row * t.row_mass).unsqueeze(-1)
    target_grad = torch.where(t.owned, grad_row * t.true_coef, 0.0)
    grad.scatter_add_(1, t.local_target.unsqueeze(1), -target_grad.unsqueeze(1))
    if t.smoothing:
        grad = grad - (grad_row * t.prior_coef).unsqueeze(-1) * t.local_prior_weighted
    return grad


class _VocabParallelCrossEntropy(torch.autograd.Function):
    """Row losses (M,) from local logits (M, V), in the compute dtype. Backward is local."""

    @staticmethod
    def forward(ctx, z: Tensor, t: _LocalTerms) -> Tensor:
        row_loss, lse = _row_loss_and_lse(_local_sums(z, t), t)
        ctx.save_for_backward(z, lse)
        ctx.terms = t
        return row_loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_row: Tensor):
        z, lse = ctx.saved_tensors
        return _local_grad(z, lse, grad_row, ctx.terms), None


class _VocabParallelLinearCrossEntropy(torch.autograd.Function):
    """Row losses (M,) from h (M, D), the local head W (V, D) and bias b (V,) or None, by row chunks.

    Only a (chunk, V) block of logits exists at a time; the backward recomputes it. Memory beyond the
    inputs: O(chunk·V + M) in the forward, plus the gradients' size in the backward.
    """

    @staticmethod
    def forward(ctx, h: Tensor, W: Tensor, b: Tensor | None, t: _LocalTerms, chunk: int) -> Tensor:
        M = h.shape[0]
        local = torch.empty(3, M, dtype=h.dtype, device=h.device)
        for i in range(0, M, chunk):
            sl = slice(i, i + chunk)
            local[:, sl] = _local_sums(F.linear(h[sl], W, b), t.rows(sl))
        row_loss, lse = _row_loss_and_lse(local, t)
        ctx.save_for_backward(h, W, b, lse)
        ctx.terms, ctx.chunk = t, chunk
        return row_loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_row: Tensor):
        h, W, b, lse = ctx.saved_tensors
        t, chunk = ctx.terms, ctx.chunk
        need_h, need_W, need_b = ctx.needs_input_grad[:3]
        dh = torch.empty_like(h) if need_h else None
        dW = torch.zeros_like(W) if need_W else None
        db = torch.zeros_like(b) if need_b else None
        for i in range(0, h.shape[0], chunk):
            sl = slice(i, i + chunk)
            gz = _local_grad(F.linear(h[sl], W, b), lse[sl], grad_row[sl], t.rows(sl))  # (chunk, V)
            if need_h:
                dh[sl] = gz @ W  # this rank's part; summed over ranks outside (_AllReduceGradient)
            if need_W:
                dW.addmm_(gz.T, h[sl])
            if need_b:
                db += gz.sum(0)
        return dh, dW, db, None, None


def _local_terms(
    flat_target: Tensor,
    *,
    V_local: int,
    num_classes: int,
    start: int,
    label_smoothing: float,
    convention: str,
    prior: Tensor | None,
    weight: Tensor | None,
    ignore_index: int,
    group,
    dtype: torch.dtype,
) -> tuple[_LocalTerms, Tensor]:
    """The terms of the local slice [start, start + V_local) and the row weights (M,)."""
    c = index_target_coefficients(
        flat_target, num_classes, label_smoothing, convention=convention, prior=prior,
        weight=None if weight is None else weight.detach(), ignore_index=ignore_index, dtype=dtype,
    )  # fmt: skip
    local = c.safe_target - start
    terms = _LocalTerms(
        row_mass=c.row_mass,
        true_coef=c.true_coef,
        prior_coef=c.prior_coef,
        local_prior_weighted=c.prior_weighted[start : start + V_local],
        owned=(local >= 0) & (local < V_local),
        local_target=local.clamp(0, V_local - 1),
        smoothing=label_smoothing > 0,
        group=group,
    )
    return terms, c.row_weight


def _check_common(target, label_smoothing, convention, reduction, ignore_index):
    eps = V.check_probability("label_smoothing", label_smoothing)
    convention = V.check_convention(convention)
    reduction = V.check_reduction(reduction)
    ignore_index = V.check_ignore_index(ignore_index)
    if not isinstance(target, Tensor):
        raise TypeError(f"Expected argument `target` to be a torch.Tensor, but got {type(target).__name__}")
    if target.is_floating_point():
        raise TypeError(
            "Expected argument `target` to hold integer class indices (the vocab-parallel losses take no "
            f"class probabilities), but got {target.dtype}"
        )
    return eps, convention, reduction, ignore_index


def _check_global(full_shape, target, num_classes, weight, prior, convention, ignore_index) -> None:
    """Check target, weight and prior against the *global* class count, as if the logits were whole."""
    V.check_target(torch.empty(full_shape, device="meta"), target, ignore_index)
    V.check_weight(weight, num_classes)
    V.check_prior(prior, num_classes, convention)


def _slice_terms(
    local_shape: Sequence[int],
    cdim: int,
    target: Tensor,
    *,
    group,
    class_offsets: Sequence[int] | None,
    label_smoothing: float,
    convention: str,
    prior: Tensor | None,
    weight: Tensor | None,
    ignore_index: int,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[_LocalTerms, Tensor]:
    """This rank's slice of the classes, the global checks, and the slice's terms: shared by both losses.

    ``local_shape`` is the shape of the local logits with the classes in dimension ``cdim``. The slice
    comes from ``class_offsets`` or an all-gather of the local sizes; target, weight and prior are then
    checked against the global K as if the logits were whole; returns ``_local_terms`` (row weights (M,)).
    """
    V_local = local_shape[cdim]
    start, _, K = _class_bounds(V_local, class_offsets, group, device)
    full_shape = list(local_shape)
    full_shape[cdim] = K
    _check_global(full_shape, target, K, weight, prior, convention, ignore_index)
    return _local_terms(
        target.reshape(-1), V_local=V_local, num_classes=K, start=start, label_smoothing=label_smoothing,
        convention=convention, prior=prior, weight=weight, ignore_index=ignore_index, group=group, dtype=dtype,
    )  # fmt: skip


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
) -> Tensor:
    r""":func:`labelsmooth.cross_entropy` on logits whose classes are split across the ranks of ``group``.

    .. math::
        \ell_i = m_i\,\mathrm{lse}(z_i) - a_i\,z_{i,y_i} - b_i\,(z_i\cdot v)

    with lse, :math:`z_{i,y_i}` and :math:`z_i\cdot v` each summed over the ranks' slices by all-reduce
    (a MAX of the slices' lse, then one SUM of three numbers per row), and :math:`a, b, m, v` from
    :func:`labelsmooth.targets.index_target_coefficients` with the global K (module docstring). The
    value and the gradient of the local logits equal those of :func:`labelsmooth.cross_entropy` on the
    concatenated logits; the loss is the same on every rank. The backward is local (no communication).

    Every rank must pass the same ``target``, ``prior`` and ``weight`` (not checked: that would cost
    communication). ``weight`` is treated as a constant (no gradient). Class-probability targets are not
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

    Returns:
        The loss, in the logits' dtype (half precision is computed in float32): a scalar, or the target's
        shape for ``reduction="none"``.

    Example:
        >>> import torch, labelsmooth
        >>> from labelsmooth.distributed import vocab_parallel_cross_entropy
        >>> z = torch.randn(4, 6, dtype=torch.float64); y = torch.tensor([0, 5, 2, -100])
        >>> # on one process (no process group) the slice is the whole vocabulary
        >>> loss = vocab_parallel_cross_entropy(z, y, label_smoothing=0.1, convention="others")
        >>> torch.allclose(loss, labelsmooth.cross_entropy(z, y, label_smoothing=0.1, convention="others"))
        True
    """
    eps, convention, reduction, ignore_index = _check_common(
        target, label_smoothing, convention, reduction, ignore_index
    )
    V.check_logits(local_logits, "local_logits")
    cdim = V.class_dim(local_logits)
    z = local_logits.movedim(cdim, -1).reshape(-1, local_logits.shape[cdim]).to(compute_dtype(local_logits.dtype))
    terms, row_weight = _slice_terms(
        local_logits.shape, cdim, target, group=group, class_offsets=class_offsets, label_smoothing=eps,
        convention=convention, prior=prior, weight=weight, ignore_index=ignore_index, dtype=z.dtype,
        device=local_logits.device,
    )  # fmt: skip
    row_loss = _VocabParallelCrossEntropy.apply(z, terms)
    return reduce_rows(row_loss, reduction, row_weight.sum(), target.shape).to(local_logits.dtype)


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
) -> Tensor:
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

    Returns:
        The loss, in the input's dtype: a scalar, or the target's shape for ``reduction="none"``.

    Example:
        >>> import torch, torch.nn.functional as F, labelsmooth
        >>> from labelsmooth.distributed import vocab_parallel_linear_cross_entropy
        >>> h = torch.randn(5, 3, dtype=torch.float64); W = torch.randn(7, 3, dtype=torch.float64)
        >>> y = torch.tensor([1, 6, 0, 3, 3])
        >>> loss = vocab_parallel_linear_cross_entropy(h, W, y, label_smoothing=0.2)
        >>> torch.allclose(loss, labelsmooth.cross_entropy(F.linear(h, W), y, label_smoothing=0.2))
        True
    """
    eps, convention, reduction, ignore_index = _check_common(
        target, label_smoothing, convention, reduction, ignore_index
    )
    V.check_logits(input, "input")
    V.check_logits(local_weight, "local_weight")
    if local_weight.dim() != 2 or local_weight.shape[1] != input.shape[-1]:
        raise ValueError(
            f"Expected argument `local_weight` to have shape (V_local, {input.shape[-1]}) for input of shape "
            f"{tuple(input.shape)}, but got {tuple(local_weight.shape)}"
        )
    if local_bias is not None and (not isinstance(local_bias, Tensor) or local_bias.shape != local_weight.shape[:1]):
        raise ValueError(
            f"Expected argument `local_bias` to have shape ({local_weight.shape[0]},), one per local class, "
            f"but got {getattr(local_bias, 'shape', type(local_bias).__name__)}"
        )
    if target.shape != input.shape[:-1]:
        raise ValueError(
            f"Expected argument `target` to have shape {tuple(input.shape[:-1])} (the input's shape without the "
            f"feature dimension), but got {tuple(target.shape)}"
        )
    V_local = local_weight.shape[0]
    if chunk_size is None:
        chunk_size = max(1, CHUNK_ELEMENTS // V_local)
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"Expected argument `chunk_size` to be a positive integer or None, but got {chunk_size!r}")
    dtype = compute_dtype(input.dtype)
    h = _AllReduceGradient.apply(input.reshape(-1, input.shape[-1]), group).to(dtype)  # (M, D)
    # the rows' logits as if whole: (M, K) for the flattened target
    terms, row_weight = _slice_terms(
        (target.numel(), V_local), 1, target.reshape(-1), group=group, class_offsets=class_offsets,
        label_smoothing=eps, convention=convention, prior=prior, weight=weight, ignore_index=ignore_index, dtype=dtype,
        device=input.device,
    )  # fmt: skip
    b = None if local_bias is None else local_bias.to(dtype)
    row_loss = _VocabParallelLinearCrossEntropy.apply(h, local_weight.to(dtype), b, terms, chunk_size)
    return reduce_rows(row_loss, reduction, row_weight.sum(), target.shape).to(input.dtype)


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
    if not isinstance(target, Tensor) or target.is_floating_point():
        raise TypeError(
            f"Expected argument `target` to hold integer class indices, but got {getattr(target, 'dtype', type(target).__name__)}"
        )
    ignore_index = V.check_ignore_index(ignore_index)
    _rank_and_world(group)
    keep = target.reshape(-1) != ignore_index
    if weight is None:
        total = keep.sum().to(torch.float64)
    else:
        if not isinstance(weight, Tensor) or weight.dim() != 1 or not weight.is_floating_point():
            raise TypeError(
                "Expected argument `weight` to be a 1-D floating-point tensor of class weights, "
                f"but got {getattr(weight, 'shape', type(weight).__name__)}"
            )
        total = weight.detach()[target.reshape(-1)[keep]].sum()
    return _all_reduce(total.clone(), dist.ReduceOp.SUM, group)
