"""The reproduction protocols: the quick suite (``labelsmooth reproduce``) and the full protocol
(``labelsmooth reproduce --full``). This module is the one place that defines them; docs cite it.

Both follow the study protocol of docs/experiments.md: validation carved from train
(:mod:`labelsmooth.experiment.splits`), a plain grid search over the learning rate and AdamW's weight decay
run separately for every loss setting with the same budget (:mod:`labelsmooth.experiment.tuning`),
selection on validation, temperature scaling fitted on validation, and the statistics of
:mod:`labelsmooth.experiment.stats` on the test part.

A protocol is a list of named *parts*, each an ordinary protocol spec, run in order into one store (the
cheap parts first, so an interrupted run has finished whole parts; run the command again to resume).

Quick suite (≤ 10 minutes on 2 cores): digits (mlp, 20 epochs, 3 re-splits × 5 seeds) and mnist1d (cnn1d,
15 epochs, the paper's 4,000/1,000 split, 3 seeds); cross-entropy, γ ∈ {0.95, 0.9, 0.8}, β = 0.5; search
space lr ∈ {1e-3, 3e-3} × weight decay ∈ {1e-4, 0.5}. Fashion-MNIST is in the full protocol only.

Full protocol (docs/results.md), γ in the seed paper's sense (γ on the true class, (1 − γ)/(K − 1) on each
other):

- ``digits`` (mlp, 20 epochs, 5 re-splits of train/test × 10 seeds) and ``mnist1d`` (cnn1d, 30 epochs, the
  paper's 4,000/1,000 split with 3 validation re-splits × 10 seeds): cross-entropy, γ ∈ {0.99, 0.97, 0.95,
  0.9, 0.85, 0.8, 0.7}, β ∈ {0.1, 0.5, 1}; search lr ∈ {2e-3, 4e-3, …, 3.2e-2} × weight decay ∈ {1e-4,
  0.1, 1, 3} (digits), lr ∈ {2e-3, 4e-3, …, 6.4e-2} × weight decay ∈ {1e-4, 0.1} (mnist1d).
- ``map …``: the MNIST-1D regime map, one part per cell: training pool (train + validation) of 1,000,
  4,000 or 16,000 examples from one generated pool with one 2,000-example test set; symmetric label noise
  0 or 20 % on train and validation (:func:`labelsmooth.experiment.splits.with_label_noise`); 10 (short)
  or 50 (long) epochs; cross-entropy, γ ∈ {0.97, 0.9, 0.8, 0.7}, β ∈ {0.1, 0.5, 1}; 5 seeds; search
  lr ∈ {4e-3, 1.6e-2} at weight decay 1e-4 (``SEARCH_MAP``: ``mnist1d``'s most frequent choice, 1.6e-2,
  and a quarter of it for the cells with many more steps; weight decay as ``mnist1d`` chose in 29 of 33
  choices), the same small budget for every arm of every cell.
- ``fashion-mnist`` (cnn, 5 epochs, the full 60,000/10,000 set, 1 split × 5 seeds): the γ and β of
  digits; search lr ∈ {2e-3, 6e-3} × weight decay ∈ {1e-4, 0.5}.
- ``resnet``: ResNet-20 with batch norm and augmentation on a 5,000-example Fashion-MNIST training pool
  (4,000 train / 1,000 validation) and the full 10,000-example test set, 15 epochs, 5 seeds;
  cross-entropy, γ ∈ {0.9, 0.8}, β = 0.5; no search (AdamW defaults).

The uniform-convention ε "that gives the same targets" is **not** run separately: with the uniform prior,
ε = K(1 − γ)/(K − 1) in the uniform convention gives exactly the target of γ (γ on the true class,
(1 − γ)/(K − 1) on each other), so the loss, its gradients and hence the run are the same up to float
rounding; running it would only duplicate rows. (``labelsmooth explain --gamma 0.9 -K 10`` shows the ε.)
"""

from __future__ import annotations

import copy

#: ``labelsmooth reproduce`` (no arguments).
QUICK = {
    "datasets": ["digits", "mnist1d"],
    "models": ["auto"],
    "gammas": [0.95, 0.9, 0.8],
    "betas": [0.5],
    "seeds": {"digits": 5, "mnist1d": 3},
    "epochs": {"digits": 20, "mnist1d": 15},
    "resplits": {"digits": 3, "mnist1d": 1},
    "search": {"lr": [1e-3, 3e-3], "weight_decay": [1e-4, 0.5]},
}

GAMMAS = [0.99, 0.97, 0.95, 0.9, 0.85, 0.8, 0.7]
BETAS = [0.1, 0.5, 1.0]
SEARCH_DIGITS = {"lr": [2e-3, 4e-3, 8e-3, 1.6e-2, 3.2e-2], "weight_decay": [1e-4, 0.1, 1.0, 3.0]}
SEARCH_MNIST1D = {"lr": [2e-3, 4e-3, 8e-3, 1.6e-2, 3.2e-2, 6.4e-2], "weight_decay": [1e-4, 0.1]}
SEARCH_MAP = {"lr": [4e-3, 1.6e-2], "weight_decay": [1e-4]}

#: The regime map's cells: training pool sizes, label-noise rates and training lengths (epochs).
MAP_SIZES = (1000, 4000, 16000)
MAP_NOISE = (0.0, 0.2)
MAP_EPOCHS = (10, 50)


def _map_cell(size: int, noise: float, epochs: int) -> dict:
    return {
        "datasets": ["mnist1d"],
        "models": ["cnn1d"],
        "gammas": [0.97, 0.9, 0.8, 0.7],
        "betas": BETAS,
        "seeds": 5,
        "epochs": epochs,
        "train_size": size,
        "test_size": 2000,
        "label_noise": noise,
        "search": SEARCH_MAP,
    }


def map_part_name(size: int, noise: float, epochs: int) -> str:
    """The name of one regime-map cell: ``map n=1000 noise=0.2 epochs=50``."""
    return f"map n={size} noise={noise:g} epochs={epochs}"


#: ``labelsmooth reproduce --full``: the parts, in the order they run.
FULL = {
    "digits": {
        "datasets": ["digits"],
        "models": ["mlp"],
        "gammas": GAMMAS,
        "betas": BETAS,
        "seeds": 10,
        "epochs": 20,
        "resplits": 5,
        "search": SEARCH_DIGITS,
    },
    "mnist1d": {
        "datasets": ["mnist1d"],
        "models": ["cnn1d"],
        "gammas": GAMMAS,
        "betas": BETAS,
        "seeds": 10,
        "epochs": 30,
        "resplits": 3,
        "search": SEARCH_MNIST1D,
    },
    **{map_part_name(n, p, e): _map_cell(n, p, e) for e in MAP_EPOCHS for p in MAP_NOISE for n in MAP_SIZES},
    "fashion-mnist": {
        "datasets": ["fashion-mnist"],
        "models": ["cnn"],
        "gammas": GAMMAS,
        "betas": BETAS,
        "seeds": 5,
        "epochs": 5,
        "resplits": 1,
        "search": {"lr": [2e-3, 6e-3], "weight_decay": [1e-4, 0.5]},
    },
    "resnet": {
        "datasets": ["fashion-mnist"],
        "models": ["resnet"],
        "gammas": [0.9, 0.8],
        "betas": [0.5],
        "seeds": 5,
        "epochs": 15,
        "augment": True,
        "train_size": 5000,
        "resplits": 1,
    },
}

DEFAULT_STORE = {"quick": "labelsmooth-runs/quick.sqlite", "full": "labelsmooth-runs/full.sqlite"}
DEFAULT_OUT = {"quick": "labelsmooth-report/quick", "full": "labelsmooth-report/full"}


def parts(full: bool = False, only: list[str] | None = None) -> list[tuple[str, dict]]:
    """``[(name, spec), ...]`` of the quick suite (one part) or the full protocol, in running order.

    ``only`` keeps the named parts (a name may be a prefix: ``"map"`` is every cell of the map).

    Example:
        >>> from labelsmooth.experiment.tuning import trial_configs
        >>> [(name, len(trial_configs(spec))) for name, spec in parts()]
        [('quick', 80)]
        >>> [name for name, _ in parts(full=True, only=["map n=1000 noise=0.2"])]
        ['map n=1000 noise=0.2 epochs=10', 'map n=1000 noise=0.2 epochs=50']
    """
    every = [("quick", QUICK)] if not full else list(FULL.items())
    if only:
        unknown = [o for o in only if not any(name.startswith(o) for name, _ in every)]
        if unknown:
            raise ValueError(
                f"Expected part names (or prefixes) among {[name for name, _ in every]}, but got {unknown}"
            )
        every = [(name, spec) for name, spec in every if any(name.startswith(o) for o in only)]
    return [(name, copy.deepcopy(spec)) for name, spec in every]


def report_keys(specs: list[dict], runs: list[dict]) -> set[str]:
    """The store keys of every part's trials and finals found in ``runs`` (store rows): what the report covers.

    Parts not run yet contribute nothing; a part cut off during tuning contributes its finished trials
    (their settings then show one seed until the part is resumed).
    """
    from labelsmooth.experiment.tuning import final_configs, trial_configs

    stored = {r["key"] for r in runs}
    keys: set[str] = set()
    for spec in specs:
        trials = {c.key() for c in trial_configs(spec)} & stored
        if not trials:
            continue
        finals, _ = final_configs(spec, [r for r in runs if r["key"] in trials])
        keys |= trials | ({c.key() for c in finals} & stored)
    return keys
