r"""The Triton backend, and the one place that knows whether Triton is installed and in which mode it runs.

The kernel (``labelsmooth.kernels._triton_kernel``) computes, one program per row, the loss of the
contract of :mod:`labelsmooth.kernels` and its gradient, into the logits' own storage when
``inplace=True``; arithmetic is float32 for half and float32 logits, float64 for float64 logits.

Triton runs its kernels compiled on a CUDA device, or in its interpreter on CPU tensors when the
environment holds ``TRITON_INTERPRET=1`` (how the tests run them without a GPU). Triton fixes that mode for
its own library when it is first imported, so this module never imports it on import:
:func:`import_triton` does, on first use, and refuses a mode other than the one Triton was imported in.
:func:`import_for_interpreter` imports it in interpreter mode up front (for test sessions that also run
``torch.compile``, which imports triton). Triton is the optional extra ``labelsmooth[triton]``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType
from unittest import mock

import torch
from torch import Tensor

from labelsmooth import _validation as V
from labelsmooth._common import compute_dtype
from labelsmooth.targets import Coefficients

#: Widest tile of classes one program holds at a time (benchmarks/triton_tune.py, docs/performance.md).
MAX_BLOCK = 2048
_TRUE = ("1", "true", "on", "yes")  # what Triton itself reads as true in TRITON_INTERPRET


def is_available() -> bool:
    """True when Triton is installed (the ``labelsmooth[triton]`` extra); does not import it."""
    return "triton" in sys.modules or importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    """True when the environment asks Triton for its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in _TRUE


def _imported_mode() -> bool | None:
    """None before triton is imported; then whether it was imported in interpreter mode."""
    if "triton" not in sys.modules:
        return None
    return _kernel().interpreted()


def can_interpret() -> bool:
    """True when the kernels can run on CPU tensors in Triton's interpreter here and now: Triton installed,
    ``TRITON_INTERPRET=1`` set, and Triton not already imported without it."""
    return interpreting() and is_available() and _imported_mode() in (None, True)


def can_run(device: torch.device) -> bool:
    """True when the kernels can run on tensors of ``device`` now (CUDA, or the CPU interpreter)."""
    if not is_available():
        return False
    if device.type == "cuda":
        return not interpreting() and _imported_mode() in (None, False)
    return can_interpret()


def import_triton() -> ModuleType:
    """Import triton (and the kernel) for the mode the environment asks for, or raise."""
    interpret = interpreting()
    kernel = _kernel()
    if kernel.interpreted() != interpret:
        raise RuntimeError(
            f"Expected TRITON_INTERPRET={'1' if interpret else 'unset'} to have been in the environment when "
            "triton was first imported (Triton fixes its interpreter mode then), but triton was imported "
            f"{'with' if not interpret else 'without'} it: set it before anything imports triton"
        )
    return sys.modules["triton"]


def import_for_interpreter() -> bool:
    """Import triton in interpreter mode now, leaving the environment as it was; True if it runs so.

    False when Triton is not installed or was imported in compiled mode before.
    """
    if not is_available():
        return False
    if "triton" not in sys.modules:
        with mock.patch.dict(os.environ, {"TRITON_INTERPRET": "1"}):
            _kernel()
    return bool(_imported_mode())


def _kernel() -> ModuleType:
    try:
        return importlib.import_module("labelsmooth.kernels._triton_kernel")
    except ImportError as e:
        raise ImportError(
            "The Triton backend needs the optional extra: pip install 'labelsmooth[triton]' (triton>=3.0)"
        ) from e


def _num_warps(block: int) -> int:
    return 4 if block <= 2048 else 8 if block <= 4096 else 16


def loss_and_grad(
    logits: Tensor, coefs: Coefficients, grad_scale: Tensor | None, *, inplace: bool, chunk_size: int | None = None,
    block_size: int | None = None, num_warps: int | None = None, z_loss: float = 0.0, softcap: float | None = None,
    z_rows: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:  # fmt: skip
    r"""Per-row loss and gradient of the label-smoothed cross-entropy, with the Triton kernel.

    .. math::
        \ell_i = m_i\,\mathrm{lse}(z_i) - a_i\,z_{i,y_i} - b_i\,(z_i \cdot v_i) + \lambda_i\,\mathrm{lse}(z_i)^2, \qquad
        g_i = s_i\,\bigl((m_i + 2\lambda_i\,\mathrm{lse}(z_i))\,\mathrm{softmax}(z_i) - a_i\,e_{y_i} - b_i\,v_i\bigr)

    with λ_i = ``z_loss`` on rows whose target is not ignored (0 elsewhere); with ``softcap`` c, z is
    first replaced by c·tanh(z/c) everywhere above, and g is multiplied by 1 − tanh²(z/c) (docs/theory.md §9).

    Args:
        logits: (M, K) floating-point logits with unit stride along K, on a CUDA device (or on the CPU
            with ``TRITON_INTERPRET=1``).
        coefs: the :class:`labelsmooth.targets.Coefficients` of those M rows.
        grad_scale: (M,) factor s_i of each row's gradient, or None for the loss alone.
        inplace: write the gradient into the logits' storage (their values are lost).
        chunk_size: accepted for the common signature and ignored: the kernel streams the rows.
        block_size: classes per tile, a power of two >= 16; default min(next power of two >= K, 2048).
        num_warps: warps per program; default 4 up to tiles of 2048 classes, then 8, then 16.
        z_loss: λ >= 0 of the z-loss λ·lse² (validated by the caller); 0 leaves it out of the kernel.
        softcap: the cap c > 0, or None.
        z_rows: optional (M,) tensor in the compute dtype that receives each row's z-loss part λ_i·lse_i²
            (zeros when ``z_loss`` is 0).

    Returns:
        ``(row_loss, grad)``: row_loss (M,) in float32 (float64 for float64 logits); grad (M, K) in the
        logits' dtype (the logits tensor itself when ``inplace``), or None without ``grad_scale``.

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
    if logits.device.type != "cuda" and not interpreting():  # checked before importing triton in the wrong mode
        raise RuntimeError(
            "Expected argument `logits` to be on a CUDA device for the Triton backend (or the environment to "
            f"set TRITON_INTERPRET=1 to run the kernels in Triton's CPU interpreter), but got device {logits.device}"
        )
    import_triton()
    kernel = _kernel()
    if logits.dim() != 2 or not logits.is_floating_point():
        raise ValueError(
            f"Expected argument `logits` to be a floating-point (M, K) tensor, but got shape {tuple(logits.shape)} and dtype {logits.dtype}"
        )
    M, K = logits.shape
    if K > 1 and logits.stride(1) != 1:
        raise ValueError(
            f"Expected argument `logits` to have unit stride along the classes, but got strides {logits.stride()}"
        )
    if coefs.target.shape != (M,) or coefs.num_classes != K or (grad_scale is not None and grad_scale.shape != (M,)):
        raise ValueError(
            f"Expected arguments `coefs` and `grad_scale` to describe the {M} rows and {K} classes of `logits`, but "
            f"got a target of shape {tuple(coefs.target.shape)}, {coefs.num_classes} classes and grad_scale "
            f"{None if grad_scale is None else tuple(grad_scale.shape)}"
        )
    block = min(kernel.next_power_of_2(K), MAX_BLOCK) if block_size is None else V.check_block_size(block_size)
    block = max(block, 16)
    acc_dtype = compute_dtype(logits.dtype)
    acc = kernel.tl.float64 if acc_dtype == torch.float64 else kernel.tl.float32
    device = logits.device
    # no weights, no prior: the kernel derives a, b, m and v from three numbers, passed as float32 (so
    # float64 logits read the tensors instead)
    scalars = coefs.row_scalars if acc_dtype != torch.float64 else None
    if scalars is not None:
        target = coefs.target.to(device).contiguous()
        a = b = m = v = target  # pointers the kernel does not read in this mode
        a_val, b_val, v_val = float(scalars[0]), float(scalars[1]), float(coefs.constant_prior)
        stride_v = 0
    else:
        a, b, m = (t.to(device).contiguous() for t in (coefs.true_coef, coefs.prior_coef, coefs.row_mass))
        v = coefs.prior_weighted.to(device).contiguous()
        stride_v = v.stride(0) if v.dim() == 2 else 0
        target = coefs.safe_target.to(device).contiguous()
        a_val = b_val = v_val = 0.0
    with_z = z_loss != 0.0
    z_coef = a  # a pointer the kernel does not read without a z-loss or with scalars
    if with_z and scalars is None:  # λ on the rows whose target is not ignored (probability targets: all)
        z_coef = (coefs.target.to(device) != coefs.ignore_index).to(acc_dtype).mul_(z_loss)
    if z_rows is not None:
        if z_rows.shape != (M,) or z_rows.dtype != acc_dtype or not z_rows.is_contiguous():
            raise ValueError(
                f"Expected argument `z_rows` to be a contiguous ({M},) tensor of dtype {acc_dtype}, but got shape "
                f"{tuple(z_rows.shape)}, dtype {z_rows.dtype}"
            )
        if not with_z or K == 0:
            z_rows.zero_()
    store_z = with_z and z_rows is not None
    write_grad = grad_scale is not None
    scale = grad_scale.to(device) if write_grad else a  # an expanded scalar keeps stride 0: one value for all
    row_loss = torch.empty(M, dtype=acc_dtype, device=device)
    grad = None
    if write_grad:
        grad = logits if inplace else torch.empty_like(logits, memory_format=torch.contiguous_format)
    if M == 0 or K == 0:
        return row_loss.zero_(), grad
    kernel.loss_and_grad_rows[(M,)](
        logits, logits.stride(0), logits if grad is None else grad, logits.stride(0) if grad is None else grad.stride(0),
        target, coefs.ignore_index, a, b, m, v, stride_v, a_val, b_val, v_val, scale, scale.stride(0) if write_grad else 0,
        row_loss, K, z_coef, float(z_loss), z_rows if store_z else a, 1.0 if softcap is None else float(softcap),
        BLOCK=block, ACC=acc, SCALARS=scalars is not None, WRITE_GRAD=write_grad, Z_LOSS=with_z,
        SOFTCAP=softcap is not None, STORE_Z=store_z, num_warps=num_warps or _num_warps(block),
    )  # fmt: skip
    return row_loss, grad
