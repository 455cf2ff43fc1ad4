"""The configuration of one training run: a frozen record whose hash keys the experiment store.

Everything that can change a run's numbers is a field; where to find data (``data_dir``) and how many
threads to use are not, so they are arguments of :func:`labelsmooth.experiment.train.train` instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from labelsmooth.conventions import epsilon_limit, gamma_limit

LOSSES = ("ce", "ls", "cp")
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant")
#: Epochs that reach the sanity accuracies of docs/harness.md with the default model and optimiser
#: (``labelsmooth train`` uses these when --epochs is not given; ``RunConfig.epochs`` defaults to 5).
#: The epochs of a run on a user data set (:mod:`labelsmooth.experiment.user_data`) when none are given.
USER_DEFAULT_EPOCHS = 10

#: The learning rate a run uses when ``RunConfig.lr`` is None, per optimiser.
DEFAULT_LR = {"adamw": 2e-3, "sgd": 0.05}

DEFAULT_EPOCHS = {"digits": 20, "mnist1d": 30, "fashion-mnist": 4, "mnist": 4, "cifar10": 30, "cifar100": 30}


def default_epochs(dataset: str) -> int:
    """The epochs ``labelsmooth train`` uses for a data set when --epochs is not given.

    Example:
        >>> default_epochs("digits"), default_epochs("fashion-mnist")
        (20, 4)
    """
    from labelsmooth.experiment import user_data

    if user_data.is_user_name(dataset):
        return USER_DEFAULT_EPOCHS
    if dataset not in DEFAULT_EPOCHS:
        raise ValueError(f"Expected a data set name in {list(DEFAULT_EPOCHS)}, but got {dataset!r}")
    return DEFAULT_EPOCHS[dataset]


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
    momentum: float = 0.9  # SGD only (AdamW ignores it)
    split: int = 0  # 0: the standard partition; r > 0: the r-th re-split (labelsmooth.experiment.splits)
    val_fraction: float = 0.2  # the part of the training rows carved out as validation
    label_noise: float = 0.0  # symmetric label noise on train and validation (splits.with_label_noise)

    def validate(self) -> RunConfig:
        """Check every field; returns ``self`` so it chains. Raises ValueError/TypeError naming the field.

        Example:
            >>> RunConfig("digits", "mlp", loss="ls", gamma=0.05).validate()
            Traceback (most recent call last):
            ...
            ValueError: Expected `gamma` (the probability on the true class) to be in (1/K, 1] = (0.1, 1]
            for digits (K = 10), but got 0.05
        """
        from labelsmooth.experiment.data import DATASETS
        from labelsmooth.experiment.data import info as dataset_info
        from labelsmooth.experiment.models import MODELS, is_user_model
        from labelsmooth.experiment.user_data import is_user_name

        if not is_user_name(self.dataset):
            _choice("dataset", self.dataset, tuple(DATASETS))  # or a user data set's name (user_data.register)
        info = dataset_info(self.dataset)
        if self.model == "auto":
            raise ValueError(
                "Expected `model` to be a model name, but got 'auto': resolve it first with "
                "labelsmooth.experiment.models.default_model(dataset)"
            )
        if not is_user_model(self.model):
            _choice("model", self.model, MODELS)
        _choice("loss", self.loss, LOSSES)
        _choice("convention", self.convention, ("uniform", "others"))
        K = info.num_classes
        if self.loss != "ls":
            for name in ("gamma", "smoothing"):
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"Expected `{name}` to be None for loss={self.loss!r} (only 'ls' smooths), "
                        f"but got {getattr(self, name)}"
                    )
            if self.convention != "uniform":
                raise ValueError(
                    f"Expected `convention` to stay 'uniform' for loss={self.loss!r}, but got {self.convention!r}"
                )
        if self.loss != "cp" and self.beta is not None:
            raise ValueError(
                f"Expected `beta` to be None for loss={self.loss!r} (only 'cp' has β), but got {self.beta}"
            )
        if self.loss == "ls":
            if (self.gamma is None) == (self.smoothing is None):
                raise ValueError(
                    "Expected exactly one of `gamma` and `smoothing` for loss='ls', but got "
                    + ("both" if self.gamma is not None else "neither")
                )
            if self.gamma is not None:
                g = _number("gamma", self.gamma)
                if not gamma_limit(K) < g <= 1.0:
                    raise ValueError(
                        f"Expected `gamma` (the probability on the true class) to be in "
                        f"(1/K, 1] = ({1 / K:g}, 1] "
                        f"for {self.dataset} (K = {K}), but got {g:g}"
                    )
                if self.convention != "uniform":
                    raise ValueError(
                        f"Expected `convention` to stay at its default with `gamma` (γ fixes the target), "
                        f"but got {self.convention!r}"
                    )
            else:
                e = _number("smoothing", self.smoothing)
                limit = epsilon_limit(K, self.convention)
                if not 0.0 <= e < limit:
                    raise ValueError(
                        f"Expected `smoothing` in [0, {limit:g}) for convention={self.convention!r} "
                        f"and K = {K} "
                        f"(the true class must stay the most likely), but got {e:g}"
                    )
        if self.loss == "cp":
            if self.beta is None:
                raise ValueError("Expected `beta` (the confidence penalty's weight) for loss='cp', but got None")
            if not _number("beta", self.beta) >= 0:
                raise ValueError(f"Expected `beta` to be >= 0, but got {self.beta}")
        _integer("epochs", self.epochs, 1)
        _integer("seed", self.seed, 0)
        _integer("batch_size", self.batch_size, 1)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        if self.lr is not None and not _number("lr", self.lr) > 0:
            raise ValueError(f"Expected `lr` to be > 0 or None (the default), but got {self.lr}")
        if not _number("weight_decay", self.weight_decay) >= 0:
            raise ValueError(f"Expected `weight_decay` to be >= 0, but got {self.weight_decay}")
        if not 0 <= _number("momentum", self.momentum) < 1:
            raise ValueError(f"Expected `momentum` to be in [0, 1), but got {self.momentum}")
        if not isinstance(self.augment, bool):
            raise TypeError(f"Expected `augment` to be a bool, but got {type(self.augment).__name__}")
        if self.augment and not info.augmentable:
            raise ValueError(
                f"Expected `augment` to be False for {self.dataset} (no augmentation makes sense there), but got True"
            )
        for name in ("train_size", "test_size"):
            if getattr(self, name) is not None:
                _integer(name, getattr(self, name), 1)
        _integer("split", self.split, 0)
        if not 0 < _number("val_fraction", self.val_fraction) < 1:
            raise ValueError(f"Expected `val_fraction` to be in (0, 1), but got {self.val_fraction}")
        if not 0 <= _number("label_noise", self.label_noise) < 1 - 1 / K:
            raise ValueError(
                f"Expected `label_noise` (the fraction of training labels replaced by another class) to be in "
                f"[0, 1 - 1/K) = [0, {1 - 1 / K:g}) for {self.dataset} (K = {K}), but got {self.label_noise}"
            )
        return self

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
        """A stable hash of the full config (sorted-key JSON, SHA-256, 16 hex digits).

        Fields added after stores were first written (:data:`KEYED_FROM_DEFAULT`) enter the hash only when
        they differ from their default, so every earlier run keeps its key.
        """
        data = self.to_dict()
        for name, default in KEYED_FROM_DEFAULT.items():
            if data[name] == default:
                del data[name]
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
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


#: Fields newer than the first stores, and the default at which :meth:`RunConfig.key` leaves them out.
KEYED_FROM_DEFAULT = {"label_noise": 0.0}


def _choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"Expected `{name}` to be one of {list(choices)}, but got {value!r}")


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Expected `{name}` to be a number, but got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"Expected `{name}` to be a finite number, but got {value}")
    return float(value)


def _integer(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Expected `{name}` to be an integer >= {minimum}, but got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"Expected `{name}` to be an integer >= {minimum}, but got {value}")
    return value
