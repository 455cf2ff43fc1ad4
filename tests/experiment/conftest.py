"""Fixtures shared by the experiment tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def blobs():
    """Three well separated Gaussian classes in 4-D, 30 examples each: (x, y)."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(90) % 3
    x = torch.randn(90, 4, generator=g) + 3 * torch.nn.functional.one_hot(y, 4).float()
    return x, y
