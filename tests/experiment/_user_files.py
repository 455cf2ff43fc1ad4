"""Small user data sets written offline for the tests: image folders, the wine table, user models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from torch import nn


def write_images(root: Path, counts: dict[str, int], size=(8, 6), mode="RGB", seed: int = 0) -> Path:
    """``root/<class>/<i>.png`` with ``counts[class]`` random images of ``size`` (H, W); class k is brighter."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = size
    for k, (c, n) in enumerate(counts.items()):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = (h, w) if mode == "L" else (h, w, 3)
            pixels = np.clip(rng.integers(0, 128, shape) + 60 * k, 0, 255).astype(np.uint8)
            Image.fromarray(pixels, mode=mode).save(root / c / f"{i:03d}.png")
    return root


def write_wine(path: Path) -> Path:
    """scikit-learn's bundled wine table (178 rows, 13 features, classes 0/1/2 in column ``target``) as CSV."""
    from sklearn.datasets import load_wine

    load_wine(as_frame=True).frame.to_csv(path, index=False)
    return path


def make_mlp(input_shape, num_classes):
    """A user model factory: (input_shape, num_classes) -> nn.Module."""
    import math

    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 16), nn.ReLU(), nn.Linear(16, num_classes))


def wrong_head(input_shape, num_classes):
    """A user model with one logit too many."""
    import math

    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes + 1))


class TinyNet(nn.Module):
    """A user model class, called as TinyNet(input_shape, num_classes)."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        import math

        self.head = nn.Linear(math.prod(input_shape), num_classes)

    def forward(self, x):
        return self.head(x.flatten(1))


def isolated_user_data(*, one_thread: bool = False, default_memory_limit: bool = False):
    """The autouse fixture of each user-data test module (``private_cache = isolated_user_data(...)``): a private
    cache folder and no user data set remembered from another test; ``one_thread``: torch on one thread (tiny
    models: more only cost synchronisation); ``default_memory_limit``: no LABELSMOOTH_MAX_DATA_BYTES from the
    environment."""

    @pytest.fixture(autouse=True)
    def private_cache(monkeypatch, tmp_path):
        import torch

        from labelsmooth.experiment import user_data

        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        if default_memory_limit:
            monkeypatch.delenv("LABELSMOOTH_MAX_DATA_BYTES", raising=False)
        user_data._FULL.clear()
        threads = torch.get_num_threads()
        if one_thread:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            user_data._FULL.clear()

    return private_cache
