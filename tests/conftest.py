import os
from unittest import mock

import pytest
import torch
from hypothesis import settings

from labelsmooth.kernels import triton_backend

# Triton fixes its interpreter mode when it is first imported, and torch.compile (the compiled backend's
# tests) imports it too: import it here, before any test module, with TRITON_INTERPRET=1, and leave the
# environment as it was (tests/test_triton.py sets it again per test; other files expect it unset).
if triton_backend.is_available():
    with mock.patch.dict(os.environ, {"TRITON_INTERPRET": "1"}):
        if triton_backend.can_interpret():
            triton_backend._import_triton()

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=15, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
