"""The preamble of the test modules that run the Triton kernels on CPU tensors in Triton's interpreter.

Triton fixes its interpreter mode when it is first imported; tests/conftest.py imports it so before any
test module. Such a module calls :func:`require_interpreter` at its top and sets
``pytestmark = pytest.mark.usefixtures("triton_interpreter")`` (tests/conftest.py: TRITON_INTERPRET=1 for
each test; the environment is left as it was).
"""

from __future__ import annotations

import os

import pytest

from labelsmooth.kernels import triton_backend


def require_interpreter(module_file: str) -> None:
    """Skip the whole module of ``module_file`` unless triton is installed and was imported in interpreter mode."""
    if not triton_backend.is_available():
        pytest.skip("the optional extra labelsmooth[triton] (triton) is not installed", allow_module_level=True)
    if not triton_backend.import_for_interpreter():
        pytest.skip(
            "triton was imported before TRITON_INTERPRET=1 was set; run: TRITON_INTERPRET=1 python -m pytest "
            f"{os.path.relpath(module_file)}",
            allow_module_level=True,
        )
