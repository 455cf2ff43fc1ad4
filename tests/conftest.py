import os

import pytest
import torch
from hypothesis import settings

from labelsmooth.kernels import triton_backend

# Triton fixes its interpreter mode when it is first imported, and torch.compile (the compiled backend's
# tests) imports it too: import it in interpreter mode before any test module (tests/test_triton.py runs
# its kernels in the interpreter; the environment is left as it was, which other files expect).
triton_backend.import_for_interpreter()

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=15, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def triton_interpreter(monkeypatch):
    """TRITON_INTERPRET=1 for one test: the Triton kernels run on CPU tensors in the interpreter (tests/_triton.py)."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
