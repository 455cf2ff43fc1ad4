"""The plain-PyTorch fused kernel: loss and gradient of a smoothed cross-entropy, chunk by chunk.

See :mod:`labelsmooth.kernels` for the contract. For each chunk of rows (a view of the logits):

1. ``z_y`` (gather) and, when some ``b_i != 0``, ``z·v`` (one matrix-vector product) are read first;
2. ``max`` per row, then ``exp(z - max)`` written straight into the gradient buffer (the logits' own
   storage when ``inplace=True``, so the logits are destroyed), and its row sum ``S``;
3. the loss ``m·(max + log S) − a·z_y − b·z·v``;
4. the buffer scaled in place to ``s·m·softmax``, then ``− s·b·v`` (a scalar per row when v is constant,
   a rank-one update otherwise) and ``− s·a`` scattered at the target.

No K-wide temporary beyond the chunk exists for float32/float64; float16/bfloat16 chunks are upcast to a
float32 chunk buffer. The default chunk holds about :data:`CHUNK_ELEMENTS` = 2**24 logits (64 MiB of
float32; 524 rows at K = 32,000). Chunk size barely changes the memory (the only chunk-sized buffer is the
float32 upcast of half inputs), but every chunk costs about a dozen parallel ops, each ending in a thread
barrier: on a shared 2-core machine cache-sized chunks (2**20 logits) measured 1.3–7× slower than 2**24
(docs/performance.md), so the default favours few, large chunks.
"""

from __future__ import annotations

import torch
from torch import Tensor

from labelsmooth.losses import compute_dtype
from labelsmooth.targets import IndexTargetCoefficients

CHUNK_ELEMENTS = 1 << 24  # logits per chunk by default: 64 MiB of float32 (see module docstring)


def default_chunk_size(num_rows: int, num_classes: int, elements: int = CHUNK_ELEMENTS) -> int:
    """Rows per chunk: about ``elements`` logits (CHUNK_ELEMENTS by default), at least 1 row, at most all rows."""
    return max(1, min(num_rows, elements // max(num_classes, 1)))


def loss_and_grad(
    logits: Tensor,
    coefs: IndexTargetCoefficients,
    grad_scale: Tensor,
    *,
    inplace: bool,
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Row losses (M,) and the scaled gradient (M, K); contract in :mod:`labelsmooth.kernels`."""
    M, K = logits.shape
    cdtype = compute_dtype(logits.dtype)
    upcast = cdtype != logits.dtype
    grad = logits if inplace else torch.empty_like(logits)
    row_loss = torch.empty(M, dtype=cdtype, device=logits.device)
    chunk = chunk_size or default_chunk_size(M, K)
    v = coefs.prior_weighted.to(cdtype)
    smooth = coefs.smoothing  # host-side facts: no device sync
    v_const = coefs.constant_prior if smooth else None
    m_all = coefs.row_mass.to(cdtype)
    for start in range(0, M, chunk):
        stop = min(start + chunk, M)
        z = logits[start:stop]
        if upcast:
            z = z.to(cdtype)
        buf = z if (inplace or upcast) else grad[start:stop]
        tgt = coefs.safe_target[start:stop].unsqueeze(1)
        a = coefs.true_coef[start:stop].to(cdtype)
        b = coefs.prior_coef[start:stop].to(cdtype)
        m = m_all[start:stop]
        s = grad_scale[start:stop].to(cdtype)
        z_y = z.gather(1, tgt).squeeze(1)
        loss = -a * z_y
        if smooth:
            z_v = z.sum(1) * v_const if v_const is not None else z @ v
            loss = loss - b * z_v
        mx = z.amax(1, keepdim=True)
        torch.sub(z, mx, out=buf)
        buf.exp_()
        sumexp = buf.sum(1, keepdim=True)
        row_loss[start:stop] = loss + m * (mx.squeeze(1) + sumexp.squeeze(1).log())
        scale = (s * m).unsqueeze(1) / sumexp
        buf.mul_(scale)
        if smooth and v_const is not None:  # two in-place passes: faster than one broadcasting addcmul
            buf.sub_((s * b * v_const).unsqueeze(1))
        elif smooth:
            buf.addr_(s * b, v, alpha=-1.0)
        buf.scatter_add_(1, tgt, (-s * a).unsqueeze(1))
        if upcast:
            grad[start:stop].copy_(buf)
    return row_loss, grad


def row_loss(logits: Tensor, coefs: IndexTargetCoefficients, *, chunk_size: int | None = None) -> Tensor:
    """Row losses (M,) only, chunk by chunk, without a gradient buffer (for no-grad evaluation)."""
    M, K = logits.shape
    cdtype = compute_dtype(logits.dtype)
    out = torch.empty(M, dtype=cdtype, device=logits.device)
    chunk = chunk_size or default_chunk_size(M, K)
    v = coefs.prior_weighted.to(cdtype)
    for start in range(0, M, chunk):
        stop = min(start + chunk, M)
        z = logits[start:stop].to(cdtype)
        z_y = z.gather(1, coefs.safe_target[start:stop].unsqueeze(1)).squeeze(1)
        lse = torch.logsumexp(z, 1)
        loss = coefs.row_mass[start:stop].to(cdtype) * lse - coefs.true_coef[start:stop].to(cdtype) * z_y
        if coefs.smoothing:  # a host-side fact, as in loss_and_grad
            loss = loss - coefs.prior_coef[start:stop].to(cdtype) * (z @ v)
        out[start:stop] = loss
    return out


def soft_loss_and_grad(
    logits: Tensor, q: Tensor, grad_scale: Tensor, *, inplace: bool, chunk_size: int | None = None
) -> tuple[Tensor, Tensor]:
    """Class-probability targets: q (M, K) is the weighted smoothed target w ⊙ q̃ in the compute dtype.

    row_loss = (Σ_k q_ik)·lse(z_i) − q_i·z_i, grad = s_i·((Σ_k q_ik)·softmax(z_i) − q_i). The (M, K) target
    exists anyway (the caller passes it), so this path is chunked but not free of K-wide tensors.
    """
    M, K = logits.shape
    cdtype = compute_dtype(logits.dtype)
    grad = logits if inplace else torch.empty_like(logits)
    out = torch.empty(M, dtype=cdtype, device=logits.device)
    chunk = chunk_size or default_chunk_size(M, K)
    for start in range(0, M, chunk):
        stop = min(start + chunk, M)
        z = logits[start:stop].to(cdtype)
        qc = q[start:stop]
        mass = qc.sum(1)
        lse = torch.logsumexp(z, 1)
        out[start:stop] = mass * lse - (qc * z).sum(1)
        s = grad_scale[start:stop].to(cdtype).unsqueeze(1)
        g = torch.softmax(z, 1).mul_(mass.unsqueeze(1)).sub_(qc).mul_(s)
        grad[start:stop].copy_(g)
    return out, grad
