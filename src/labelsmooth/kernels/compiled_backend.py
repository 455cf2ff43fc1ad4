r"""The compiled CPU kernel: the same chunk computation as :mod:`.torch_backend`, fused by ``torch.compile``.

See :mod:`labelsmooth.kernels` for the contract. :func:`_rows` states the whole chunk computation once, in
plain PyTorch; TorchInductor turns it into one C++/OpenMP kernel with three vectorised loops per chunk:

1. ``max``, ``z·v`` (or ``Σ z`` for a uniform prior) and ``z_y`` in one read of the logits;
2. ``Σ exp(z − max)``;
3. the gradient :math:`s\,(m\,\mathrm{softmax}(z) - a\,e_y - b\,v)` written straight into the gradient
   buffer (the logits' own storage with ``inplace=True``), half inputs cast on the store.

Smoothing adds one more accumulator to loop 1 and one multiply-add to loop 3, so it is nearly free, where
the plain-PyTorch backend needs two extra passes over the chunk (a row sum and a subtraction). Chunks are
kept cache-sized (about :data:`CHUNK_ELEMENTS` logits) so that loops 2 and 3 re-read the chunk from cache:
Inductor runs the three loops one after the other over the whole chunk, not row by row.

Costs: ``torch.compile`` needs a C++ compiler (g++ or clang++) and compiles on first use: about 10–40 s
in a fresh process for each new dtype, prior kind and class count (Inductor caches the kernels on disk,
so later processes start faster), after which shapes that change only in the number of rows reuse a
dynamic-shape kernel. It is opt-in (``backend="compiled"``); "auto" keeps the plain backend on CPUs.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from labelsmooth.kernels.torch_backend import default_chunk_size
from labelsmooth.losses import compute_dtype
from labelsmooth.targets import IndexTargetCoefficients

CHUNK_ELEMENTS = 1 << 21  # logits per chunk by default (cache-sized): 8 MiB of float32, 65 rows at K = 32,000


def _rows(
    z: Tensor, out: Tensor | None, tgt: Tensor, a: Tensor, b: Tensor, m: Tensor, s: Tensor, v: Tensor | None
) -> Tensor:
    """Row losses of one chunk; writes the scaled gradient into ``out``, or into ``z`` itself when None.

    In place, ``z`` is passed once and mutated (never as two aliasing arguments, whose reads the compiler
    may order after the write). z, out: (n, K); tgt: (n,) int64 in [0, K); a, b, m, s: (n,) in the compute dtype; v: (K,), a 0-d
    constant prior, or None without smoothing (then ``b`` is not read).
    """
    zc = z.to(compute_dtype(z.dtype))
    mx = zc.amax(1)
    z_y = zc.gather(1, tgt.unsqueeze(1)).squeeze(1)
    # exp written twice on purpose: one shared tensor makes Inductor store a chunk-sized buffer between
    # loops 2 and 3, where two expressions are recomputed in registers
    sumexp = torch.exp(zc - mx.unsqueeze(1)).sum(1)
    loss = m * (mx + sumexp.log()) - a * z_y
    grad = torch.exp(zc - mx.unsqueeze(1)) * (s * m / sumexp).unsqueeze(1)
    if v is not None:
        loss = loss - b * ((zc * v).sum(1) if v.dim() else zc.sum(1) * v)
        grad = grad - (s * b).unsqueeze(1) * v
    is_target = torch.arange(zc.shape[1], device=z.device) == tgt.unsqueeze(1)
    grad = grad - torch.where(is_target, (s * a).unsqueeze(1), 0.0)
    (z if out is None else out).copy_(grad)
    return loss


@functools.cache
def _compiled():
    return torch.compile(_rows, fullgraph=True)


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
    grad = logits if inplace else torch.empty_like(logits)
    row_loss = torch.empty(M, dtype=cdtype, device=logits.device)
    if coefs.smoothing:
        const = coefs.constant_prior
        v = torch.tensor(const, dtype=cdtype) if const is not None else coefs.prior_weighted.to(cdtype).contiguous()
    else:
        v = None
    a, b, m = (t.to(cdtype).contiguous() for t in (coefs.true_coef, coefs.prior_coef, coefs.row_mass))
    s = grad_scale.to(cdtype).contiguous()
    tgt = coefs.safe_target.long().contiguous()
    kernel = _compiled()
    # On a GPU, Inductor's reductions are row-local already: one call for all rows (no per-chunk launches).
    chunk = chunk_size or (M if logits.is_cuda else default_chunk_size(M, K, CHUNK_ELEMENTS))
    for start in range(0, M, chunk):
        rows = slice(start, min(start + chunk, M))
        out = None if inplace else grad[rows]
        row_loss[rows] = kernel(logits[rows], out, tgt[rows], a[rows], b[rows], m[rows], s[rows], v)
    return row_loss, grad
