"""The configuration of one training run: a frozen record whose hash keys the experiment store.

Everything that can change a run's numbers is a field; where to find data (``data_dir``) and how many
threads to use are not, so they are arguments of :func:`labelsmooth.experiment.train.train` instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

LOSSES = ("ce", "ls", "cp")


@dataclass(frozen=True)
class RunConfig:
    """One run: data set, model, loss setting, optimisation and seed.

    Loss settings: ``loss="ce"`` (plain cross-entropy); ``loss="ls"`` with exactly one of ``gamma``
    (the seed paper's probability on the true class; the "others" convention with ε = 1 − γ) or
    ``smoothing`` ε with ``convention`` "uniform" or "others"; ``loss="cp"`` with ``beta`` (confidence
    penalty). Fields that do not apply to the loss stay at their defaults, so equal settings hash equally.
    """

    dataset: str
    model: str
    loss: str = "ce"
    gamma: float | None = None
    smoothing: float | None = None
    convention: str = "uniform"
    beta: float | None = None
    epochs: int = 5
    seed: int = 0
    batch_size: int = 128
    optimizer: str = "adamw"
    lr: float | None = None  # None: the optimiser's default for this model
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    augment: bool = False
    train_size: int | None = None  # None: the data set's standard split
    test_size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"Expected RunConfig fields {sorted(names)}, but got unknown {unknown}")
        return cls(**data)

    def key(self) -> str:
        """A stable hash of the full config (sorted-key JSON, SHA-256, 16 hex digits)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def label(self) -> str:
        """The loss setting in words: "ce", "γ=0.9", "ε=0.1 (uniform)", "β=0.5"."""
        if self.loss == "ce":
            return "ce"
        if self.loss == "cp":
            return f"β={self.beta:g}"
        if self.gamma is not None:
            return f"γ={self.gamma:g}"
        return f"ε={self.smoothing:g} ({self.convention})"
