r"""The compiled backend as "auto" runs it for large CPU inputs in eager mode: where TorchInductor cannot
build its kernel, the same computation runs uncompiled instead of raising.

See :mod:`labelsmooth.kernels` for the contract, and :mod:`.compiled_backend` for the computation. A
compile failure (no working C++ compiler, missing Python headers, an Inductor error) warns once and is
remembered: that call finishes with :func:`.compiled_backend._rows` uncompiled (each chunk's failed
compilation wrote nothing, so the chunks done before it stand), and "auto" takes the plain backend for
the rest of the process. ``backend="compiled"`` keeps raising such errors.

Example:
    >>> import torch
    >>> from labelsmooth.kernels import auto_compiled
    >>> auto_compiled.compile_failure() is None  # nothing has failed in this process
    True
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from labelsmooth.kernels import compiled_backend
from labelsmooth.targets import Coefficients

_FAILURES: list[str] = []  # the first compile failure of this process, once met


def _compile_errors() -> tuple[type[BaseException], ...]:
    """What torch.compile raises when it cannot build a kernel (Dynamo wraps Inductor's errors)."""
    errors: list[type[BaseException]] = [torch._dynamo.exc.TorchDynamoException]
    try:
        from torch._inductor.exc import CppCompileError

        errors.append(CppCompileError)
    except ImportError:  # an Inductor without it: Dynamo's wrapper still catches its errors
        pass
    return tuple(errors)


def compile_failure() -> str | None:
    """Why compiling the kernel failed in this process ("ErrorType: first line"), or None."""
    return _FAILURES[0] if _FAILURES else None


def _guarded(kernel):
    def call(*args):
        if _FAILURES:
            return compiled_backend._rows(*args)
        try:
            return kernel(*args)
        except _compile_errors() as e:
            first_line = (str(e).strip().splitlines() or [""])[0][:300]
            _FAILURES.append(f"{type(e).__name__}: {first_line}")
            warnings.warn(
                "labelsmooth: torch.compile could not build the compiled CPU kernel that backend='auto' "
                f"picks for large inputs ({_FAILURES[0]}); using the plain backend from now on "
                "(pass backend='torch' to skip compiling)",
                RuntimeWarning,
                stacklevel=2,
            )
            return compiled_backend._rows(*args)

    return call


def loss_and_grad(
    logits: Tensor, coefs: Coefficients, grad_scale: Tensor | None, *, inplace: bool, chunk_size: int | None = None,
    **terms,
) -> tuple[Tensor, Tensor | None]:  # fmt: skip
    """The contract of :mod:`labelsmooth.kernels`, by :func:`.compiled_backend.loss_and_grad`, with its
    compile failures turned into one warning and the uncompiled computation."""
    return compiled_backend.loss_and_grad(
        logits, coefs, grad_scale, inplace=inplace, chunk_size=chunk_size, wrap=_guarded, **terms
    )
