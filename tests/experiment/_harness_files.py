"""Helpers for the harness tests (imported, not a conftest): tiny data files in the official formats."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from labelsmooth.experiment.data import IDX_FILES, write_idx


def write_idx_set(
    folder: Path, n_train: int = 40, n_test: int = 20, classes: int = 10, gz: bool = False, seed: int = 0
):
    """Four IDX files like MNIST's (uint8 images N×28×28, labels N), every class present; returns them."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        arrays[f"{split}_images"] = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % classes).astype(np.uint8)
    for key, array in arrays.items():
        write_idx(folder / (IDX_FILES[key] + (".gz" if gz else "")), array)
    return arrays


def write_cifar(folder: Path, hundred: bool = False, per_batch: int = 12, seed: int = 0):
    """CIFAR "python version" batches as the official files hold them (pickled dicts with bytes keys)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    K = 100 if hundred else 10
    key = b"fine_labels" if hundred else b"labels"
    names = ["train"] if hundred else [f"data_batch_{i}" for i in range(1, 6)]
    out = {}
    for name in [*names, "test" if hundred else "test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, K, size=per_batch)]
        batch = {
            b"batch_label": name.encode(),
            key: labels,
            b"data": data,
            b"filenames": [b"x.png"] * per_batch,
        }
        if hundred:
            batch[b"coarse_labels"] = [v // 5 for v in labels]
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
        out[name] = (data, labels)
    meta = {b"fine_label_names" if hundred else b"label_names": [f"class{i}".encode() for i in range(K)]}
    with open(folder / ("meta" if hundred else "batches.meta"), "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return out
