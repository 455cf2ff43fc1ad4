r"""The Triton kernel of :mod:`labelsmooth.kernels.triton_backend` (imported by it only, and only once
Triton's mode is known: importing this module imports triton).

One program per row i of logits z (M, K), with the coefficients a, b, m, v of
:class:`labelsmooth.targets.Coefficients`, the row's gradient factor s, the z-loss coefficient λ_i (λ on
kept rows, 0 on ignored ones) and, with a softcap c, the capped logits x = c·tanh(z/c) (else x = z):

.. math::
    L_i = \mathrm{lse}(x_i), \qquad
    \ell_i = m_i\,L_i + \lambda_i L_i^2 - a_i\,x_{i,y_i} - b_i\,(x_i \cdot v_i), \\
    g_i = s_i\,\bigl((m_i + 2\lambda_i L_i)\,\mathrm{softmax}(x_i) - a_i\,e_{y_i} - b_i\,v_i\bigr)
          \odot \bigl(1 - \tanh^2(z_i/c)\bigr).

Sweep 1 reads the row in tiles of ``BLOCK`` classes, keeping the running maximum and sum of exponentials
(online softmax, Milakov & Gimelshein 2018, arXiv:1805.02867) and the sum x·v; sweep 2 writes g.
tanh is written with exp (Triton's interpreter has no libdevice): with e = exp(−2|u|),
tanh(u) = sign(u)·(1 − e)/(1 + e) and 1 − tanh²(u) = 4e/(1 + e)², which never cancels for large |u|.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _capped(z, cap):
    """(c·tanh(z/c), 1 − tanh²(z/c)) elementwise; -inf gives (−c, 0)."""
    u = z / cap
    e = tl.exp(-2.0 * tl.abs(u))
    t = (1.0 - e) / (1.0 + e)
    t = tl.where(u < 0.0, -t, t)
    return cap * t, 4.0 * e / ((1.0 + e) * (1.0 + e))


@triton.jit
def loss_and_grad_rows(
    logits_ptr, stride_row, grad_ptr, stride_grad, target_ptr, ignore_index, a_ptr, b_ptr, m_ptr, v_ptr,
    stride_v, a_val, b_val, v_val, scale_ptr, scale_stride, loss_ptr, K,
    zc_ptr, z_val, z_rows_ptr, cap,
    BLOCK: tl.constexpr, ACC: tl.constexpr, SCALARS: tl.constexpr, WRITE_GRAD: tl.constexpr,
    Z_LOSS: tl.constexpr, SOFTCAP: tl.constexpr, STORE_Z: tl.constexpr,
):  # fmt: skip
    """SCALARS: every kept row has a = a_val, b = b_val, v = v_val everywhere and λ = z_val (no weights, no
    prior); the raw target is read, ignore_index folded in and the class clamped here. Otherwise a, b, m,
    λ (``zc_ptr``), the safe target and v (row ``stride_v`` apart: 0 for one shared v) come from memory.
    Z_LOSS adds λ·L²; SOFTCAP caps the logits at ``cap``; STORE_Z writes each row's λ·L² to ``z_rows_ptr``."""
    row = tl.program_id(0).to(tl.int64)
    base = logits_ptr + row * stride_row
    y = tl.load(target_ptr + row).to(tl.int64)
    if SCALARS:
        keep = y != ignore_index
        y = tl.minimum(tl.maximum(tl.where(keep, y, 0), 0), K - 1)
        a = tl.where(keep, a_val, 0.0).to(ACC)
        b = tl.where(keep, b_val, 0.0).to(ACC)
        m = a + b  # Σ_k v_k = 1
        lam = tl.where(keep, z_val, 0.0).to(ACC)
    else:
        a = tl.load(a_ptr + row).to(ACC)
        b = tl.load(b_ptr + row).to(ACC)
        m = tl.load(m_ptr + row).to(ACC)
        if Z_LOSS:
            lam = tl.load(zc_ptr + row).to(ACC)
        else:
            lam = tl.zeros((), ACC)
    v_row = v_ptr + row * stride_v
    z_y = tl.load(base + y).to(ACC)
    if SOFTCAP:
        z_y, _ = _capped(z_y, cap)
    run_max = tl.full((), float("-inf"), ACC)
    run_sum = tl.zeros((), ACC)
    dot = tl.zeros((BLOCK,), ACC)  # lane-wise partial sums of x·v, reduced once at the end
    for start in range(0, K, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < K
        z = tl.load(base + cols, mask=mask, other=float("-inf")).to(ACC)
        if SOFTCAP:
            x, _ = _capped(z, cap)
            z = tl.where(mask, x, float("-inf"))
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
    weight = m  # of the softmax in the gradient
    if Z_LOSS:
        z_part = tl.where(lam != 0.0, lam * lse * lse, 0.0)
        loss += z_part
        weight = m + tl.where(lam != 0.0, 2.0 * lam * lse, 0.0)
        if STORE_Z:
            tl.store(z_rows_ptr + row, z_part)
    tl.store(loss_ptr + row, loss)
    if WRITE_GRAD:
        scale = tl.load(scale_ptr + row * scale_stride).to(ACC)
        grad_base = grad_ptr + row * stride_grad
        for start in range(0, K, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            mask = cols < K
            z = tl.load(base + cols, mask=mask, other=0.0).to(ACC)
            if SOFTCAP:
                z, chain = _capped(z, cap)
            if SCALARS:
                bv = b * v_val
            else:
                bv = b * tl.load(v_row + cols, mask=mask, other=0.0).to(ACC)
            g = tl.where(weight != 0.0, weight * tl.exp(z - lse), 0.0) - bv - tl.where(cols == y, a, 0.0)
            if SOFTCAP:
                g = g * chain
            tl.store(grad_base + cols, (scale * g).to(grad_ptr.dtype.element_ty), mask=mask)


def next_power_of_2(n: int) -> int:
    return triton.next_power_of_2(n)


def interpreted() -> bool:
    """Whether triton was imported in its interpreter mode (its own library functions are interpreted)."""
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(tl.zeros, InterpretedFunction)
