"""Helpers for the harness tests (imported, not a conftest): tiny runs, the CLI in a subprocess, and store
records as :meth:`labelsmooth.experiment.store.Store.runs` returns them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from labelsmooth.experiment.config import RunConfig

#: The tested source tree: subprocesses (CLI, workers) must import it, not the installed package.
SRC = str(Path(__file__).resolve().parents[2] / "src")
#: A run that takes about a second: digits, 200 training and 100 test examples, one epoch.
TINY = {"epochs": 1, "train_size": 200, "test_size": 100}
#: :data:`TINY` as command-line options.
TINY_ARGS = [a for k, v in TINY.items() for a in (f"--{k.replace('_', '-')}", str(v))]


def cli(*args: str, **env: str) -> tuple[list[str], dict[str, str]]:
    """``(argv, env)`` that run ``labelsmooth ARGS`` from :data:`SRC` in a subprocess."""
    return [sys.executable, "-m", "labelsmooth", *args], {**os.environ, "PYTHONPATH": SRC, **env}


def stored_run(dataset: str, seed: int, metrics: dict, *, gamma: float | None = None, **fields) -> dict:
    """A finished run of the default mlp config: cross-entropy, or label smoothing with ``gamma``."""
    config = RunConfig(dataset, "mlp", loss="ce" if gamma is None else "ls", gamma=gamma, seed=seed)
    return {"key": config.key(), "status": "done", "config": config.to_dict(), "metrics": metrics, **fields}
