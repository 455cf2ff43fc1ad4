r"""The Triton kernel of :mod:`labelsmooth.kernels.triton_backend` (imported by it only, and only once
Triton's mode is known: importing this module imports triton).

One program per row i of logits z (M, K), with the coefficients a, b, m, v of
:class:`labelsmooth.targets.Coefficients` and the row's gradient factor s:

.. math::
    \ell_i = m_i\,\mathrm{lse}(z_i) - a_i\,z_{i,y_i} - b_i\,(z_i \cdot v_i), \qquad
    g_i = s_i\,\bigl(m_i\,\mathrm{softmax}(z_i) - a_i\,e_{y_i} - b_i\,v_i\bigr).

Sweep 1 reads the row in tiles of ``BLOCK`` classes, keeping the running maximum and sum of exponentials
(online softmax, Milakov & Gimelshein 2018, arXiv:1805.02867) and the sum z·v; sweep 2 writes g.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def loss_and_grad_rows(
    logits_ptr, stride_row, grad_ptr, stride_grad, target_ptr, ignore_index, a_ptr, b_ptr, m_ptr, v_ptr,
    stride_v, a_val, b_val, v_val, scale_ptr, scale_stride, loss_ptr, K,
    BLOCK: tl.constexpr, ACC: tl.constexpr, SCALARS: tl.constexpr, WRITE_GRAD: tl.constexpr,
):  # fmt: skip
    """SCALARS: every kept row has a = a_val, b = b_val and v = v_val everywhere (no weights, no prior);
    the raw target is read, ignore_index folded in and the class clamped here. Otherwise a, b, m, the
    safe target and v (row ``stride_v`` apart: 0 for one shared v) come from memory."""
    row = tl.program_id(0).to(tl.int64)
    base = logits_ptr + row * stride_row
    y = tl.load(target_ptr + row).to(tl.int64)
    if SCALARS:
        keep = y != ignore_index
        y = tl.minimum(tl.maximum(tl.where(keep, y, 0), 0), K - 1)
        a = tl.where(keep, a_val, 0.0).to(ACC)
        b = tl.where(keep, b_val, 0.0).to(ACC)
        m = a + b  # Σ_k v_k = 1
    else:
        a = tl.load(a_ptr + row).to(ACC)
        b = tl.load(b_ptr + row).to(ACC)
        m = tl.load(m_ptr + row).to(ACC)
    v_row = v_ptr + row * stride_v
    z_y = tl.load(base + y).to(ACC)
    run_max = tl.full((), float("-inf"), ACC)
    run_sum = tl.zeros((), ACC)
    dot = tl.zeros((BLOCK,), ACC)  # lane-wise partial sums of z·v, reduced once at the end
    for start in range(0, K, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < K
        z = tl.load(base + cols, mask=mask, other=float("-inf")).to(ACC)
        new_max = tl.maximum(run_max, tl.max(z, axis=0))
        # shift by 0 while every logit so far is -inf, so that exp never sees (-inf) - (-inf)
        shift = tl.where(new_max == float("-inf"), 0.0, new_max)
        run_sum = run_sum * tl.exp(run_max - shift) + tl.sum(tl.exp(z - shift), axis=0)
        run_max = new_max
        if SCALARS:
            dot += tl.where(mask, z, 0.0)  # times v_val once, below
        else:
            dot += tl.where(mask, z, 0.0) * tl.load(v_row + cols, mask=mask, other=0.0).to(ACC)  # never (-inf)·0
    lse = run_max + tl.log(run_sum)
    zv = tl.sum(dot, axis=0)
    if SCALARS:
        zv = zv * v_val
    # terms with a zero coefficient are dropped, not multiplied, so ignored rows give exactly 0
    # and -inf logits (masked classes) do not turn 0·(-inf) into NaN
    loss = tl.where(m != 0.0, m * lse, 0.0)
    loss -= tl.where(a != 0.0, a * z_y, 0.0)
    loss -= tl.where(b != 0.0, b * zv, 0.0)
    tl.store(loss_ptr + row, loss)
    if WRITE_GRAD:
        scale = tl.load(scale_ptr + row * scale_stride).to(ACC)
        grad_base = grad_ptr + row * stride_grad
        for start in range(0, K, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            mask = cols < K
            z = tl.load(base + cols, mask=mask, other=0.0).to(ACC)
            if SCALARS:
                bv = b * v_val
            else:
                bv = b * tl.load(v_row + cols, mask=mask, other=0.0).to(ACC)
            g = tl.where(m != 0.0, m * tl.exp(z - lse), 0.0) - bv - tl.where(cols == y, a, 0.0)
            tl.store(grad_base + cols, (scale * g).to(grad_ptr.dtype.element_ty), mask=mask)


def next_power_of_2(n: int) -> int:
    return triton.next_power_of_2(n)


def interpreted() -> bool:
    """Whether triton was imported in its interpreter mode (its own library functions are interpreted)."""
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(tl.zeros, InterpretedFunction)
