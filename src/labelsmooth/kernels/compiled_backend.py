r"""The compiled CPU kernel: the chunk computation of :mod:`.torch_backend`, fused by ``torch.compile``.

See :mod:`labelsmooth.kernels` for the contract. :func:`_rows` states the whole chunk computation once,
out of place, with the loss formula of :func:`.torch_backend.loss_terms`; TorchInductor turns it into one
C++/OpenMP kernel per chunk (docs/performance.md describes its loops and costs). It needs a C++ compiler
(g++ or clang++) and compiles on first use for each new dtype, prior kind and class count; rows may change
without recompiling (the class dimension is marked static, so that a second class count in one process
gets its own kernel rather than one generic in K, which Dynamo's automatic dynamic shapes would build). "auto" takes it inside a caller's torch.compile (where nothing extra is compiled) and,
in eager mode, for CPU inputs of at least ``AUTO_MIN_LOGITS`` logits where a C++ compiler is found,
through :mod:`.auto_compiled` (:func:`labelsmooth.kernels.select_backend`).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from labelsmooth._common import compute_dtype, in_dtype
from labelsmooth.kernels import torch_backend as T
from labelsmooth.targets import Coefficients

# Logits per chunk by default: 128 MiB of float32, 1,048 rows at K = 32,000. Inductor's kernel makes three
# passes over a chunk (max, sum of exponentials, gradient) and holds no chunk-sized temporary; cache-sized
# chunks (2^21) keep the later passes in cache but pay Dynamo's guards on every call, and lost at every
# shape measured (docs/performance.md).
CHUNK_ELEMENTS = 1 << 25
# Kernels one process may compile for _rows: each dtype, prior kind (none, constant, (K,), (n, K)), target
# kind, with or without a gradient and in or out of place is one; Dynamo's default limit (8) is too few.
RECOMPILE_LIMIT = 64


def _rows(
    z: Tensor, out: Tensor | None, tgt: Tensor, a: Tensor, b: Tensor, m: Tensor, s: Tensor | None, v: Tensor | None,
    index_targets: bool, z_coef: Tensor | None = None, softcap: float | None = None, z_out: Tensor | None = None,
) -> Tensor:  # fmt: skip
    """Row losses of one chunk; writes the scaled gradient into ``out``, or into ``z`` itself when None,
    or nowhere when ``s`` is None.

    In place, ``z`` is passed once and mutated (never as two aliasing arguments, whose reads the compiler
    may order after the write). z, out: (n, K); tgt: (n,) int64 in [0, K); a, b, m, s: (n,) in the compute
    dtype; v: (K,) or (n, K), a 0-d constant prior, or None without smoothing (then ``b`` is not read);
    z_coef: (n,) the z-loss coefficient of lse² (or None), softcap: the cap c of z ← c·tanh(z/c) (or None),
    z_out: (n,), if given, receives each row's z-loss part.
    """
    zc = z.to(compute_dtype(z.dtype))
    t = None
    if softcap is not None:
        t = torch.tanh(zc / softcap)
        zc = t * softcap
    mx = zc.amax(1)
    z_y = zc.gather(1, tgt.unsqueeze(1)).squeeze(1) if index_targets else None
    z_v = None
    if v is not None:
        z_v = (zc * v).sum(1) if v.dim() else zc.sum(1) * v
    # exp written twice on purpose: one shared tensor makes Inductor store a chunk-sized buffer between
    # loops 2 and 3, where two expressions are recomputed in registers
    sumexp = torch.exp(zc - mx.unsqueeze(1)).sum(1)
    lse = mx + sumexp.log()
    r = T.Rows(
        target=tgt, a=a, b=b, m=m, v=v, v_const=None, smoothing=v is not None, index_targets=index_targets,
        z_coef=z_coef,
    )  # fmt: skip
    loss = T.loss_terms(lse, z_y, z_v, r)
    if z_out is not None:
        z_out.copy_(T.z_loss_rows(lse, r))
    if s is None:
        return loss
    grad = torch.exp(zc - mx.unsqueeze(1)) * (s * T.softmax_weight(lse, r) / sumexp).unsqueeze(1)
    if v is not None:
        grad = grad - (s * b).unsqueeze(1) * v
    if index_targets:
        is_target = torch.arange(zc.shape[1], device=z.device) == tgt.unsqueeze(1)
        grad = grad - torch.where(is_target, (s * a).unsqueeze(1), 0.0)
    if t is not None:
        grad = grad * (1.0 - t * t)  # the chain rule of the cap
    (z if out is None else out).copy_(grad)
    return loss


def _classes_static(kernel):
    """``kernel`` with the class dimension of its (n, K) and (K,) arguments marked static for Dynamo."""

    def call(z, out, tgt, a, b, m, s, v, *rest):
        for t in (z, out):
            if t is not None:
                torch._dynamo.mark_static(t, 1)
        if v is not None and v.dim():
            torch._dynamo.mark_static(v, v.dim() - 1)
        return kernel(z, out, tgt, a, b, m, s, v, *rest)

    return call


@functools.cache
def _compiled():
    return torch.compile(_rows, fullgraph=True)


def loss_and_grad(
    logits: Tensor, coefs: Coefficients, grad_scale: Tensor | None, *, inplace: bool, chunk_size: int | None = None,
    z_loss: float = 0.0, softcap: float | None = None, z_rows: Tensor | None = None, wrap=None,
) -> tuple[Tensor, Tensor | None]:  # fmt: skip
    """The contract of :mod:`labelsmooth.kernels`, by the compiled :func:`_rows` on chunks of ``chunk_size``
    rows (default: :data:`CHUNK_ELEMENTS` logits on CPUs, every row at once on GPUs); ``z_loss``,
    ``softcap`` and ``z_rows`` as :func:`.torch_backend.loss_and_grad`; ``wrap``, if given, wraps the
    compiled kernel in eager mode (:mod:`.auto_compiled` turns compile failures into a fallback)."""
    needs_grad = grad_scale is not None
    M, K = logits.shape
    cdtype = compute_dtype(logits.dtype)
    grad = (logits if inplace else torch.empty_like(logits)) if needs_grad else None
    row_loss = torch.empty(M, dtype=cdtype, device=logits.device)
    if not coefs.smoothing:
        v = None
    elif coefs.constant_prior is not None:
        v = torch.tensor(coefs.constant_prior, dtype=cdtype)
    else:
        v = in_dtype(coefs.prior_weighted, cdtype).contiguous()
    a, b, m = (in_dtype(t, cdtype).contiguous() for t in (coefs.true_coef, coefs.prior_coef, coefs.row_mass))
    s = in_dtype(grad_scale, cdtype).contiguous() if needs_grad else None
    tgt = coefs.safe_target.contiguous()
    z_coef = None
    if z_loss != 0.0:
        if coefs.index_targets:
            z_coef = ((coefs.target != coefs.ignore_index).to(cdtype) * z_loss).contiguous()
        else:
            z_coef = torch.full((M,), z_loss, dtype=cdtype, device=logits.device)

    def run_chunks(rows_fn, chunk: int) -> None:  # row_loss (and grad) filled chunk by chunk
        for start in range(0, M, chunk):
            sl = slice(start, min(start + chunk, M))
            out = None if (inplace or not needs_grad) else grad[sl]
            vs = v[sl] if v is not None and v.dim() == 2 else v
            row_loss[sl] = rows_fn(
                logits[sl], out, tgt[sl], a[sl], b[sl], m[sl], None if s is None else s[sl], vs, coefs.index_targets,
                None if z_coef is None else z_coef[sl], softcap, None if z_rows is None else z_rows[sl],
            )  # fmt: skip

    if torch.compiler.is_compiling():
        # Inside a caller's torch.compile: _rows is traced into the caller's graph and fused with it, on
        # all rows at once by default (a chunk loop would only be unrolled in the graph).
        run_chunks(_rows, chunk_size or M)
        return row_loss, grad
    kernel = _classes_static(_compiled() if wrap is None else wrap(_compiled()))
    # On a GPU, Inductor's reductions are row-local already: one call for all rows (no per-chunk launches).
    chunk = chunk_size or (M if logits.is_cuda else T.default_chunk_size(M, K, CHUNK_ELEMENTS))
    with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
        run_chunks(kernel, chunk)
    return row_loss, grad
