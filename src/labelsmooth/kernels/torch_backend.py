r"""The plain-PyTorch kernel: the one chunk computation of a smoothed cross-entropy, loss and gradient.

For a chunk of rows z (n, K) with the coefficients of :class:`labelsmooth.targets.Coefficients`
(a, b, m, v; y the target class) and each row's gradient factor s:

.. math::
    \ell_i = m_i\,\mathrm{lse}(z_i) - a_i\,z_{i,y_i} - b_i\,(z_i\cdot v_i), \qquad
    g_i = s_i\,\bigl(m_i\,\mathrm{softmax}(z_i) - a_i\,e_{y_i} - b_i\,v_i\bigr).

:func:`loss_and_grad` is the backend contract of :mod:`labelsmooth.kernels`. The chunk computation is
written once, in small pieces that the linear head (:mod:`labelsmooth.linear`, whose chunks come from a
matrix product) and the vocab-parallel loss (:mod:`labelsmooth.distributed`, whose lse is combined across
ranks) reuse: :func:`target_logit` and :func:`prior_logit` (the statistics), :func:`loss_terms` (the
loss from them), :func:`softmax_weight` (the weight of the softmax in the gradient), :func:`subtract_targets`
(the gradient's target terms), and :func:`chunk_loss_and_grad` / :func:`chunk_loss`, which combine them.
A new per-row term of the loss (a function of lse) changes :func:`loss_terms` and :func:`softmax_weight`;
a transform of the logits changes :func:`chunk_input` and the gradient's chain rule in one place each.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from labelsmooth._common import compute_dtype, in_dtype
from labelsmooth.targets import Coefficients

CHUNK_ELEMENTS = 1 << 24  # logits per chunk by default: 64 MiB of float32 (docs/performance.md)


def default_chunk_size(num_rows: int, num_classes: int, elements: int = CHUNK_ELEMENTS) -> int:
    """Rows per chunk: about ``elements`` logits (CHUNK_ELEMENTS by default), at least 1 row, at most all rows."""
    return max(1, min(num_rows, elements // max(num_classes, 1)))


@dataclass(frozen=True)
class Rows:
    """The coefficients of a chunk of n rows, in the compute dtype.

    target: (n, 1) int64 class of a's term; a, b, m: (n,); v: (K,) or (n, K), or None when every entry
    equals ``v_const``; owned: (n,) bool, the rows whose target class lies in these logits (a slice of
    the classes, :mod:`labelsmooth.distributed`), or None for all; z_coef: (n,) the z-loss coefficient
    of lse² (λ on kept rows, 0 on ignored ones), or None without a z-loss; softcap: the cap c of
    z ← c·tanh(z/c), or None.
    """

    target: Tensor
    a: Tensor
    b: Tensor
    m: Tensor
    v: Tensor | None
    v_const: float | None
    smoothing: bool
    index_targets: bool = True
    owned: Tensor | None = None
    z_coef: Tensor | None = None
    softcap: float | None = None


def rows(
    coefs: Coefficients, sl: slice, dtype: torch.dtype, *, v: Tensor | None = None, z_loss: float = 0.0,
    softcap: float | None = None,
) -> Rows:  # fmt: skip
    """The chunk ``sl`` of ``coefs`` in ``dtype``; ``v`` (the whole (K,) or (M, K) v in ``dtype``) saves a cast;
    ``z_loss`` λ (on the rows whose target is not ignored) and ``softcap`` as :class:`Rows`."""
    z_coef = None
    if z_loss != 0.0:
        if coefs.index_targets:
            z_coef = (coefs.target[sl] != coefs.ignore_index).to(dtype) * z_loss
        else:
            z_coef = torch.full((sl.stop - sl.start,), z_loss, dtype=dtype, device=coefs.row_mass.device)
    if v is None and coefs.constant_prior is None:
        v = in_dtype(coefs.prior_weighted, dtype)
    if v is not None and v.dim() == 2:
        v = v[sl]
    return Rows(
        target=coefs.safe_target[sl].unsqueeze(1), a=in_dtype(coefs.true_coef[sl], dtype),
        b=in_dtype(coefs.prior_coef[sl], dtype), m=in_dtype(coefs.row_mass[sl], dtype),
        v=None if coefs.constant_prior is not None else v, v_const=coefs.constant_prior,
        smoothing=coefs.smoothing, index_targets=coefs.index_targets, z_coef=z_coef, softcap=softcap,
    )  # fmt: skip


def chunk_input(z: Tensor, dtype: torch.dtype) -> Tensor:
    """The chunk's logits in the compute dtype (a copy only for half inputs)."""
    return in_dtype(z, dtype)


def target_logit(z: Tensor, r: Rows) -> Tensor | None:
    """(n,) z_{i,y_i}; 0 on rows whose target lies outside these logits; None without index targets."""
    if not r.index_targets:
        return None
    z_y = z.gather(1, r.target).squeeze(1)
    return z_y if r.owned is None else torch.where(r.owned, z_y, 0.0)


def prior_logit(z: Tensor, r: Rows) -> Tensor | None:
    """(n,) z_i · v_i, or None without smoothing."""
    if not r.smoothing:
        return None
    if r.v is None:
        return z.sum(1) * r.v_const
    return z @ r.v if r.v.dim() == 1 else (z * r.v).sum(1)


def loss_terms(lse: Tensor, z_y: Tensor | None, z_v: Tensor | None, r: Rows) -> Tensor:
    """(n,) ℓ_i = m_i·lse_i − a_i·z_{i,y_i} − b_i·(z_i·v_i) (+ λ_i·lse_i² with a z-loss): the loss from the
    row statistics."""
    loss = r.m * lse
    if r.z_coef is not None:
        loss = loss + r.z_coef * lse.square()
    if z_y is not None:
        loss = loss - r.a * z_y
    if z_v is not None:
        loss = loss - r.b * z_v
    return loss


def softmax_weight(lse: Tensor, r: Rows) -> Tensor:
    """(n,) the weight of softmax(z_i) in the gradient of ℓ_i: m_i (+ 2·λ_i·lse_i with a z-loss)."""
    if r.z_coef is None:
        return r.m
    return r.m + 2.0 * r.z_coef * lse


def z_loss_rows(lse: Tensor, r: Rows) -> Tensor:
    """(n,) the z-loss part λ_i·lse_i² of each row's loss (zeros without a z-loss)."""
    return torch.zeros_like(lse) if r.z_coef is None else r.z_coef * lse.square()


def cap(z: Tensor, r: Rows) -> tuple[Tensor, Tensor | None]:
    """(c·tanh(z/c), tanh(z/c)) with a softcap c (two new chunk-sized tensors), else (z, None)."""
    if r.softcap is None:
        return z, None
    t = torch.tanh(z / r.softcap)
    return t * r.softcap, t


def subtract_targets(buf: Tensor, r: Rows, s: Tensor, *, prior: bool = True) -> None:
    """In place: buf −= s_i·b_i·v_i (with ``prior``) and buf −= s_i·a_i·e_{y_i}."""
    if prior and r.smoothing:
        if r.v is None:  # two in-place passes: faster than one broadcasting addcmul
            buf.sub_((s * r.b * r.v_const).unsqueeze(1))
        elif r.v.dim() == 1:
            buf.addr_(s * r.b, r.v, alpha=-1.0)
        else:
            buf.addcmul_(r.v, (s * r.b).unsqueeze(1), value=-1.0)
    if r.index_targets:
        a = r.a if r.owned is None else torch.where(r.owned, r.a, 0.0)
        buf.scatter_add_(1, r.target, (-s * a).unsqueeze(1))


def chunk_loss_and_grad(
    z: Tensor, buf: Tensor, r: Rows, s: Tensor, *, z_v: Tensor | None = None, prior_grad: bool = True,
    z_rows: Tensor | None = None,
) -> Tensor:  # fmt: skip
    """(n,) losses of the chunk z (n, K), compute dtype; writes the gradient g (n, K) into ``buf``.

    ``buf`` may be z itself (z is then overwritten). ``z_v`` replaces :func:`prior_logit` when the caller
    knows it (the linear head: z·v = h·Wᵀv + bias·v), and ``prior_grad=False`` leaves the −s·b·v term of
    the gradient to the caller (applied as a rank-one update). ``z_rows`` (n,), if given, receives the
    z-loss part of each row. With a softcap (``r.softcap``) the statistics, loss and gradient are those of
    the capped logits, the gradient times the chain rule 1 − tanh²(z/c); ``z_v`` must then be of the
    capped logits and ``prior_grad`` True (the rank-one shortcut does not survive the cap).
    """
    if r.softcap is not None:
        if not prior_grad:
            raise ValueError("chunk_loss_and_grad: prior_grad=False is not valid with a softcap")
        zc, t = cap(z, r)
        loss = _chunk_loss_and_grad(zc, zc, r, s, z_v, prior_grad, z_rows)
        torch.mul(zc, t.square_().neg_().add_(1.0), out=buf)  # the chain rule: dz'/dz = 1 − tanh²(z/c)
        return loss
    return _chunk_loss_and_grad(z, buf, r, s, z_v, prior_grad, z_rows)


def _chunk_loss_and_grad(
    z: Tensor, buf: Tensor, r: Rows, s: Tensor, z_v: Tensor | None, prior_grad: bool, z_rows: Tensor | None
) -> Tensor:
    z_y = target_logit(z, r)  # read before buf (possibly z) is overwritten
    if z_v is None:
        z_v = prior_logit(z, r)
    mx = z.amax(1, keepdim=True)
    torch.sub(z, mx, out=buf)
    buf.exp_()
    sumexp = buf.sum(1, keepdim=True)
    lse = mx.squeeze(1) + sumexp.squeeze(1).log()
    buf.mul_((s * softmax_weight(lse, r)).unsqueeze(1) / sumexp)
    subtract_targets(buf, r, s, prior=prior_grad)
    if z_rows is not None:
        z_rows.copy_(z_loss_rows(lse, r))
    return loss_terms(lse, z_y, z_v, r)


def chunk_loss(z: Tensor, r: Rows, *, z_v: Tensor | None = None, z_rows: Tensor | None = None) -> Tensor:
    """(n,) losses of the chunk z (n, K), without a gradient (nothing is written but ``z_rows``, the z-loss
    parts, if given). With a softcap ``z_v`` must be of the capped logits (or None)."""
    z, _ = cap(z, r)
    lse = torch.logsumexp(z, 1)
    if z_rows is not None:
        z_rows.copy_(z_loss_rows(lse, r))
    return loss_terms(lse, target_logit(z, r), prior_logit(z, r) if z_v is None else z_v, r)


def gradient(z: Tensor, lse: Tensor, r: Rows, s: Tensor) -> Tensor:
    """(n, K) g for a chunk whose lse (n,) is known (combined across the ranks that hold its classes)."""
    buf = torch.exp(z - lse.unsqueeze(1)).mul_((s * softmax_weight(lse, r)).unsqueeze(1))
    subtract_targets(buf, r, s)
    return buf


def loss_and_grad(
    logits: Tensor, coefs: Coefficients, grad_scale: Tensor | None, *, inplace: bool, chunk_size: int | None = None,
    z_loss: float = 0.0, softcap: float | None = None, z_rows: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:  # fmt: skip
    """The contract of :mod:`labelsmooth.kernels`, by :func:`chunk_loss_and_grad` (or :func:`chunk_loss`
    without ``grad_scale``) on chunks of ``chunk_size`` rows (default: :data:`CHUNK_ELEMENTS` logits).

    This backend also takes the z-loss coefficient ``z_loss`` and the logit cap ``softcap`` (see
    :func:`labelsmooth.cross_entropy`); ``z_rows`` (M,), compute dtype, if given, receives each row's
    z-loss part."""
    cdtype = compute_dtype(logits.dtype)
    M, K = logits.shape
    upcast = cdtype != logits.dtype
    row_loss = torch.empty(M, dtype=cdtype, device=logits.device)
    chunk = chunk_size or default_chunk_size(M, K)
    v = None if coefs.constant_prior is not None else in_dtype(coefs.prior_weighted, cdtype)
    if grad_scale is None:
        for start in range(0, M, chunk):
            sl = slice(start, min(start + chunk, M))
            r = rows(coefs, sl, cdtype, v=v, z_loss=z_loss, softcap=softcap)
            row_loss[sl] = chunk_loss(chunk_input(logits[sl], cdtype), r, z_rows=None if z_rows is None else z_rows[sl])
        return row_loss, None
    grad = logits if inplace else torch.empty_like(logits)
    for start in range(0, M, chunk):
        sl = slice(start, min(start + chunk, M))
        z = chunk_input(logits[sl], cdtype)
        buf = z if (inplace or upcast) else grad[sl]
        r = rows(coefs, sl, cdtype, v=v, z_loss=z_loss, softcap=softcap)
        row_loss[sl] = chunk_loss_and_grad(
            z, buf, r, in_dtype(grad_scale[sl], cdtype), z_rows=None if z_rows is None else z_rows[sl]
        )
        if upcast:
            grad[sl].copy_(buf)
    return row_loss, grad
