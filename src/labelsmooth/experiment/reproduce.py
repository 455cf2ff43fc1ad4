"""The reproduction protocols: the quick suite (``labelsmooth reproduce``) and the full protocol
(``labelsmooth reproduce --full``). This module is the one place that defines them; docs cite it.

Both follow the study protocol of docs/experiments.md: validation carved from train
(:mod:`labelsmooth.experiment.splits`), a plain grid search over the learning rate and AdamW's weight decay
run separately for every loss setting with the same budget (:mod:`labelsmooth.experiment.tuning`),
selection on validation, temperature scaling fitted on validation, and the statistics of
:mod:`labelsmooth.experiment.stats` on the test part.

Quick suite (≤ 10 minutes on 2 cores): digits (mlp, 20 epochs, 3 re-splits × 5 seeds) and mnist1d (cnn1d,
15 epochs, the paper's 4,000/1,000 split, 3 seeds); cross-entropy, γ ∈ {0.95, 0.9, 0.8}, β = 0.5; search
space lr ∈ {1e-3, 3e-3} × weight decay ∈ {1e-4, 0.5}. Fashion-MNIST is in the full protocol only.

Full protocol: seeds 0–4; γ ∈ {0.95, 0.9, 0.85, 0.8, 0.7} (the seed paper's γ: γ on the true class,
(1 − γ)/(K − 1) on each other); β ∈ {0.1, 0.5, 1.0}; cross-entropy; digits (mlp, 5 re-splits), mnist1d
(cnn1d, 3 re-splits) and the full Fashion-MNIST (cnn, 10 epochs, 1 split); search space lr ∈ {1e-3, 2e-3,
4e-3} × weight decay ∈ {1e-4, 0.1, 1.0}.

The uniform-convention ε "that gives the same targets" is **not** run separately: with the uniform prior,
ε = K(1 − γ)/(K − 1) in the uniform convention gives exactly the target of γ (γ on the true class,
(1 − γ)/(K − 1) on each other), so the loss, its gradients and hence the run are the same up to float
rounding; running it would only duplicate rows. (``labelsmooth explain --gamma 0.9 -K 10`` shows the ε.)
"""

from __future__ import annotations

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

#: ``labelsmooth reproduce --full``.
FULL = {
    "datasets": ["digits", "mnist1d", "fashion-mnist"],
    "models": ["auto"],
    "gammas": [0.95, 0.9, 0.85, 0.8, 0.7],
    "betas": [0.1, 0.5, 1.0],
    "seeds": 5,
    "epochs": {"digits": 20, "mnist1d": 30, "fashion-mnist": 10},
    "resplits": {"digits": 5, "mnist1d": 3, "fashion-mnist": 1},
    "search": {"lr": [1e-3, 2e-3, 4e-3], "weight_decay": [1e-4, 0.1, 1.0]},
}

DEFAULT_STORE = {"quick": "labelsmooth-runs/quick.sqlite", "full": "labelsmooth-runs/full.sqlite"}
DEFAULT_OUT = {"quick": "labelsmooth-report/quick", "full": "labelsmooth-report/full"}


def protocol(full: bool = False) -> dict:
    """A copy of the spec of the quick suite or the full protocol.

    Example:
        >>> from labelsmooth.experiment.tuning import trial_configs
        >>> len(trial_configs(protocol())), len(trial_configs(protocol(full=True)))
        (80, 729)
    """
    import copy

    return copy.deepcopy(FULL if full else QUICK)
