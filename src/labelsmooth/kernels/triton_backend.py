r"""Triton kernels for the fused label-smoothed cross-entropy: the loss of each row and its gradient.

Every loss in the library is, per row i of logits z (M, K) (see :mod:`labelsmooth.targets`),

.. math::
    \ell_i = m_i\,\mathrm{lse}(z_i) - a_i\,z_{i,y_i} - b_i\,(z_i \cdot v), \qquad
    g_i = s_i\,\bigl(m_i\,\mathrm{softmax}(z_i) - a_i\,e_{y_i} - b_i\,v\bigr)

with the convention, prior, class weights and ignore_index already folded into a, b, v and m, and the
reduction into the per-row gradient factor s. Two kernels compute it:

1. ``_row_stats`` (one program per row) sweeps the row once in tiles of ``BLOCK`` classes, keeping the
   running maximum and the running sum of exponentials (online softmax, Milakov & Gimelshein 2018,
   arXiv:1805.02867), and the smoothing sum z·v; it reads the target logit directly. It writes lse_i and
   ℓ_i.
2. ``_write_grad`` (one program per row and tile) reads a tile again and writes the gradient tile,
   into the logits' own storage when ``inplace=True`` (as Liger-Kernel does), so that the backward pass
   needs no (M, K) buffer beyond the logits.

Arithmetic is float32 for float16/bfloat16/float32 logits and float64 for float64 logits. Tile widths that
do not divide K are masked. The kernels are compiled lazily, on the first call, for the mode Triton is in
at that moment: on a CUDA device, or in Triton's interpreter on CPU tensors when the environment holds
``TRITON_INTERPRET=1`` (how the tests run them without a GPU). Triton decides between the two when it is
first imported, so the variable must be set before anything imports triton (``torch.compile`` does);
this module imports triton only on first use. Triton is the optional extra ``labelsmooth[triton]``; this
module imports without it, and :func:`loss_and_grad` then raises ImportError.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys

import torch
from torch import Tensor

from labelsmooth.losses import compute_dtype
from labelsmooth.targets import IndexTargetCoefficients

# Imported on first use (_import_triton), never with this module: Triton fixes its interpreter mode when
# it is first imported, so importing labelsmooth must not decide it. The kernels read these globals.
triton = None
tl = None

# Widest tile of classes one program holds at a time, and the warps per program for a tile width
# (benchmarks/triton_tune.py measures the choices on a GPU; docs/performance.md has the numbers).
MAX_BLOCK = 2048
NUM_WARPS: dict[int, int] = {}


def is_available() -> bool:
    """True when Triton is installed (the ``labelsmooth[triton]`` extra); does not import it."""
    return "triton" in sys.modules or importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    """True when the environment asks Triton for its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def can_interpret() -> bool:
    """True when the kernels can run on CPU tensors in Triton's interpreter here and now.

    That needs Triton installed, ``TRITON_INTERPRET=1`` in the environment, and Triton not already
    imported without it (its own library functions are compiled or interpreted from that first import on).
    """
    if not interpreting() or not is_available():
        return False
    return "triton" not in sys.modules or _imported_interpreting()


def _import_triton():
    global triton, tl
    if triton is None:
        try:
            import triton as triton_module
            import triton.language as language
        except ImportError as e:
            raise ImportError(
                "The Triton backend needs the optional extra: pip install 'labelsmooth[triton]' (triton>=3.0)"
            ) from e
        triton, tl = triton_module, language
    return triton


def _imported_interpreting() -> bool:
    """The mode Triton was imported in: its own ``tl.zeros`` is interpreted or compiled since then."""
    _import_triton()
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(tl.zeros, InterpretedFunction)


def _loss_and_grad_rows(
    logits_ptr, stride_row, grad_ptr, stride_grad, target_ptr, ignore_index, a_ptr, b_ptr, m_ptr, v_ptr,
    a_val, b_val, v_val, scale_ptr, scale_stride, loss_ptr, K,
    BLOCK: tl.constexpr, ACC: tl.constexpr, SCALARS: tl.constexpr,
):  # fmt: skip
    """One program per row: sweep 1 gives lse_i and ℓ_i, sweep 2 writes g_i (the row is then in L2).

    SCALARS: every kept row has a = a_val, b = b_val and v = v_val everywhere (no weights, no prior); the
    raw target is read, ignore_index folded in and the class clamped here. Otherwise a, b, m, v and the
    safe target come from memory.
    """
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
            dot += tl.where(mask, z, 0.0) * tl.load(v_ptr + cols, mask=mask, other=0.0).to(ACC)  # never (-inf)·0
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
    scale = tl.load(scale_ptr + row * scale_stride).to(ACC)
    grad_base = grad_ptr + row * stride_grad
    for start in range(0, K, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < K
        z = tl.load(base + cols, mask=mask, other=0.0).to(ACC)
        if SCALARS:
            bv = b * v_val
        else:
            bv = b * tl.load(v_ptr + cols, mask=mask, other=0.0).to(ACC)
        g = tl.where(m != 0.0, m * tl.exp(z - lse), 0.0) - bv - tl.where(cols == y, a, 0.0)
        tl.store(grad_base + cols, (scale * g).to(grad_ptr.dtype.element_ty), mask=mask)


@functools.cache
def _compiled(interpret: bool):
    """The kernel, jitted for one mode. ``triton.jit`` picks interpreter or compiler when it runs."""
    del interpret  # the cache key: the mode in force when the kernel was jitted
    return triton.jit(_loss_and_grad_rows)


def _num_warps(block: int) -> int:
    return NUM_WARPS.get(block, 4 if block <= 2048 else 8 if block <= 4096 else 16)


def check_block_size(block_size: object) -> int:
    if isinstance(block_size, bool) or not isinstance(block_size, int):
        raise TypeError(
            f"Expected argument `block_size` to be a power of two >= 16, but got {type(block_size).__name__}"
        )
    if block_size < 16 or block_size & (block_size - 1):
        raise ValueError(f"Expected argument `block_size` to be a power of two >= 16, but got {block_size}")
    return block_size


def loss_and_grad(
    logits: Tensor,
    coefs: IndexTargetCoefficients,
    grad_scale: Tensor,
    *,
    inplace: bool,
    chunk_size: int | None = None,
    block_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Per-row loss and gradient of the label-smoothed cross-entropy, with Triton kernels.

    .. math::
        \ell_i = m_i\,\mathrm{lse}(z_i) - a_i\,z_{i,y_i} - b_i\,(z_i \cdot v), \qquad
        g_i = s_i\,(m_i\,\mathrm{softmax}(z_i) - a_i\,e_{y_i} - b_i\,v)

    The same contract as the pure-PyTorch backend; the coefficients come from
    :func:`labelsmooth.targets.index_target_coefficients` (the module docstring describes the kernels).

    Args:
        logits: (M, K) floating-point logits with unit stride along K, on a CUDA device (or on the CPU
            with ``TRITON_INTERPRET=1``).
        coefs: the coefficients of those M rows: a = ``true_coef`` (M,), b = ``prior_coef`` (M,),
            v = ``prior_weighted`` (K,), y = ``safe_target`` (M,), m = ``row_mass`` (M,).
        grad_scale: (M,) factor s_i of each row's gradient (the reduction and the upstream gradient).
        inplace: write the gradient into the logits' storage (their values are lost).
        chunk_size: accepted for the common backend signature and ignored: the kernels stream the rows.
        block_size: classes per tile, a power of two >= 16; default min(next power of two >= K, 4096).

    Returns:
        ``(row_loss, grad)``: row_loss (M,) in float32 (float64 for float64 logits); grad (M, K) in the
        logits' dtype, the logits tensor itself when ``inplace``.

    Example:
        >>> import os, pytest, torch, torch.nn.functional as F
        >>> from unittest import mock
        >>> from labelsmooth.kernels import triton_backend
        >>> from labelsmooth.targets import index_target_coefficients
        >>> z = torch.tensor([[2.0, 0.5, -1.0]]); y = torch.tensor([0])
        >>> with mock.patch.dict(os.environ, {"TRITON_INTERPRET": "1"}):  # no GPU here: Triton's interpreter
        ...     if not triton_backend.can_interpret(): pytest.skip("triton absent, or imported before that")
        ...     loss, grad = triton_backend.loss_and_grad(z, index_target_coefficients(y, 3, 0.1), torch.ones(1),
        ...                                               inplace=False)
        >>> zz = z.clone().requires_grad_()
        >>> ref = F.cross_entropy(zz, y, label_smoothing=0.1, reduction="sum"); ref.backward()
        >>> torch.allclose(loss, ref.detach()), torch.allclose(grad, zz.grad)
        (True, True)
    """
    del chunk_size
    interpret = interpreting()
    if logits.device.type != "cuda" and not interpret:  # checked before importing triton in the wrong mode
        raise RuntimeError(
            "Expected argument `logits` to be on a CUDA device for the Triton backend (or the environment to "
            f"set TRITON_INTERPRET=1 to run the kernels in Triton's CPU interpreter), but got device {logits.device}"
        )
    _import_triton()
    if interpret != _imported_interpreting():
        raise RuntimeError(
            f"Expected TRITON_INTERPRET={'1' if interpret else 'unset'} to have been in the environment when "
            "triton was first imported (Triton fixes its interpreter mode then), but triton was imported "
            f"{'with' if not interpret else 'without'} it: set it before anything imports triton"
        )
    if logits.dim() != 2 or not logits.is_floating_point():
        raise ValueError(
            f"Expected argument `logits` to be a floating-point (M, K) tensor, but got shape {tuple(logits.shape)} and dtype {logits.dtype}"
        )
    M, K = logits.shape
    if K > 1 and logits.stride(1) != 1:
        raise ValueError(
            f"Expected argument `logits` to have unit stride along the classes, but got strides {logits.stride()}"
        )
    if coefs.target.shape != (M,) or coefs.num_classes != K or grad_scale.shape != (M,):
        raise ValueError(
            f"Expected arguments `coefs` and `grad_scale` to describe the {M} rows and {K} classes of `logits`, but "
            f"got a target of shape {tuple(coefs.target.shape)}, {coefs.num_classes} classes and grad_scale "
            f"{tuple(grad_scale.shape)}"
        )
    block = min(triton.next_power_of_2(K), MAX_BLOCK) if block_size is None else check_block_size(block_size)
    block = max(block, 16)
    acc_dtype = compute_dtype(logits.dtype)
    acc = tl.float64 if acc_dtype == torch.float64 else tl.float32
    device = logits.device
    # no weights, no prior: the kernel derives a, b, m and v from three numbers (passed as float32, so
    # float64 logits take the tensors instead)
    scalars = coefs.row_scalars if acc_dtype != torch.float64 else None
    if scalars is not None:
        target = coefs.target.to(device).contiguous()
        a = b = m = v = target  # pointers the kernel does not read in this mode
        a_val, b_val, v_val = float(scalars[0]), float(scalars[1]), float(coefs.constant_prior)
    else:
        a, b, m = (t.to(device).contiguous() for t in (coefs.true_coef, coefs.prior_coef, coefs.row_mass))
        v = coefs.prior_weighted.to(device).contiguous()
        target = coefs.safe_target.to(device).contiguous()
        a_val = b_val = v_val = 0.0
    scale = grad_scale.to(device)  # an expanded scalar keeps stride 0: one value read by every row
    row_loss = torch.empty(M, dtype=acc_dtype, device=device)
    grad = logits if inplace else torch.empty_like(logits, memory_format=torch.contiguous_format)
    if M == 0 or K == 0:
        return row_loss.zero_(), grad
    kernel = _compiled(interpret)
    kernel[(M,)](
        logits, logits.stride(0), grad, grad.stride(0), target, coefs.ignore_index, a, b, m, v,
        a_val, b_val, v_val, scale, scale.stride(0), row_loss, K,
        BLOCK=block, ACC=acc, SCALARS=scalars is not None, num_warps=_num_warps(block),
    )  # fmt: skip
    return row_loss, grad
