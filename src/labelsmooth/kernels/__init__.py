r"""Fused loss-and-gradient kernels behind one contract, with a backend choice.

Every backend module provides::

    loss_and_grad(logits, coefs, grad_scale, *, inplace, chunk_size=None) -> (row_loss, grad)

- ``logits``: (M, K), unit stride along K, any float dtype;
- ``coefs``: :class:`labelsmooth.targets.Coefficients` for those M rows, from class indices or from
  class probabilities (then v is (M, K), one row each);
- ``grad_scale``: (M,) float32 (or float64), each row's gradient factor (1/denominator for "mean"), or
  None when no gradient is wanted (then nothing is written and ``grad`` is None);
- ``row_loss``: (M,) in the compute dtype, :math:`m_i\,\mathrm{lse}(z_i) - a_i z_{i,y_i} - b_i\,(z_i\cdot v_i)`;
- ``grad``: (M, K) in the logits' dtype, :math:`s_i\,(m_i\,\mathrm{softmax}(z_i) - a_i e_{y_i} - b_i v_i)`,
  written into the logits' storage when ``inplace=True``.

Every backend also takes ``z_loss`` (λ of a z-loss λ·lse² on kept rows), ``softcap`` (z ← c·tanh(z/c)
first) and ``z_rows`` ((M,), receives each row's z-loss part); callers pass them only when set, so
without them each backend runs exactly its plain contract above.

Maths is done in float32 for float16/bfloat16 (float64 stays float64). :mod:`.torch_backend` is plain,
device-agnostic PyTorch; :mod:`.triton_backend` runs Triton kernels on CUDA devices;
:mod:`.compiled_backend` is the torch backend's computation fused by ``torch.compile`` (it compiles on
first use and needs a C++ compiler on CPUs; "auto" takes it inside a caller's torch.compile, and in eager
mode for CPU inputs of at least :data:`AUTO_MIN_LOGITS` logits, through :mod:`.auto_compiled`, which falls
back where compiling fails).
"""

from __future__ import annotations

import functools
import os
import shutil
from types import ModuleType

import torch
from torch import Tensor

from labelsmooth import _validation as V
from labelsmooth.kernels import auto_compiled, compiled_backend, torch_backend, triton_backend

BACKENDS = ("auto", "torch", "triton", "compiled")
#: In eager mode "auto" compiles the CPU kernel for inputs of at least this many logits (N·K): there its
#: first call's seconds of compilation are worth it (docs/performance.md, "torch.compile").
AUTO_MIN_LOGITS = 1 << 22


def _cxx_compiler() -> str | None:
    """The C++ compiler TorchInductor would call, if it is installed (looked up once per $CXX and $PATH:
    the search of $PATH cost 0.2 ms, a fifth of a small call's fixed cost)."""
    return _find_cxx_compiler(os.environ.get("CXX"), os.environ.get("PATH"))


@functools.cache
def _find_cxx_compiler(cxx: str | None, path: str | None) -> str | None:
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        return shutil.which(get_cpp_compiler(), path=path)
    except Exception:  # no compiler found, or an Inductor without this helper
        return None


def select_backend(backend: str, logits: Tensor) -> ModuleType:
    """The backend module for ``logits``.

    "auto" takes Triton for CUDA tensors when it can run. For CPU tensors it takes the compiled backend
    inside a caller's torch.compile (its chunk computation is then traced into the caller's graph); in
    eager mode, for at least :data:`AUTO_MIN_LOGITS` logits where a C++ compiler is found and compiling
    has not failed before in this process, the compiled backend through :mod:`.auto_compiled` (it
    compiles on the first call for each dtype and class count, seconds, and falls back with a warning
    where compiling fails); else the plain torch backend.

    "triton" raises ValueError where it cannot run: triton missing, or CPU tensors without
    ``TRITON_INTERPRET=1``. "compiled" raises ValueError when no C++ compiler is found.
    """
    backend = V.check_choice("backend", backend, BACKENDS)
    if backend == "torch":
        return torch_backend
    if backend == "compiled":
        if logits.device.type == "cpu" and not torch.compiler.is_compiling() and _cxx_compiler() is None:
            raise ValueError(
                "Expected argument `backend` to be 'compiled' only where torch.compile can build CPU kernels, "
                "but no C++ compiler (g++ or clang++, or $CXX) was found; use backend='torch'"
            )
        return compiled_backend
    if backend == "auto":
        if logits.is_cuda and triton_backend.can_run(logits.device):
            return triton_backend
        if logits.device.type == "cpu":
            if torch.compiler.is_compiling():
                return compiled_backend
            if (
                logits.numel() >= AUTO_MIN_LOGITS
                and auto_compiled.compile_failure() is None
                and _cxx_compiler() is not None
            ):
                return auto_compiled
        return torch_backend
    if not triton_backend.is_available():
        raise ValueError(
            "Expected argument `backend` to name an installed backend, but got 'triton' "
            "(triton is not installed: pip install 'labelsmooth[triton]')"
        )
    if not (logits.is_cuda or triton_backend.interpreting()):
        raise ValueError(
            "Expected argument `backend` to be 'triton' only for CUDA tensors (or with TRITON_INTERPRET=1), "
            f"but got 'triton' for a tensor on {logits.device}"
        )
    return triton_backend


__all__ = [
    "AUTO_MIN_LOGITS",
    "BACKENDS",
    "auto_compiled",
    "compiled_backend",
    "select_backend",
    "torch_backend",
    "triton_backend",
]
