"""The reproduction protocols: the quick suite (``labelsmooth reproduce``) and the full protocol of
issue 6 (``labelsmooth reproduce --full``). This module is the one place that defines them; docs cite it.

Full protocol: seeds 0–4; γ ∈ {0.95, 0.9, 0.85, 0.8, 0.7} (the seed paper's γ: γ on the true class,
(1 − γ)/(K − 1) on each other); the confidence penalty with β ∈ {0.1, 0.5, 1.0}; plain cross-entropy;
digits (mlp), mnist1d (cnn1d, the paper's 4,000/1,000 split) and the full Fashion-MNIST (cnn,
60,000/10,000), the default ("auto") model of each, which fits 2 CPU cores.

The uniform-convention ε "that gives the same targets" is **not** run separately: with the uniform prior,
ε = K(1 − γ)/(K − 1) in the uniform convention gives exactly the target of γ (γ on the true class,
(1 − γ)/(K − 1) on each other), so the loss, its gradients and hence the run are the same up to float
rounding; running it would only duplicate rows. (``labelsmooth explain --gamma 0.9 -K 10`` shows the ε.)
"""

from __future__ import annotations

#: ``labelsmooth reproduce`` (no arguments): three data sets, 3 seeds, CE + three γ + one β.
QUICK = {
    "datasets": ["digits", "mnist1d", "fashion-mnist"],
    "models": ["auto"],
    "gammas": [0.95, 0.9, 0.8],
    "betas": [0.5],
    "seeds": 3,
    "epochs": {"digits": 20, "mnist1d": 30, "fashion-mnist": 4},
    "train_size": {"fashion-mnist": 10000},
    "test_size": {"fashion-mnist": 2000},
}

#: ``labelsmooth reproduce --full``: the protocol of issue 6.
FULL = {
    "datasets": ["digits", "mnist1d", "fashion-mnist"],
    "models": ["auto"],
    "gammas": [0.95, 0.9, 0.85, 0.8, 0.7],
    "betas": [0.1, 0.5, 1.0],
    "seeds": 5,
    "epochs": {"digits": 20, "mnist1d": 30, "fashion-mnist": 10},
}

DEFAULT_STORE = {"quick": "labelsmooth-runs/quick.sqlite", "full": "labelsmooth-runs/full.sqlite"}
DEFAULT_OUT = {"quick": "labelsmooth-report/quick", "full": "labelsmooth-report/full"}


def protocol(full: bool = False) -> dict:
    """A copy of the sweep spec of the quick suite or the full protocol.

    Example:
        >>> from labelsmooth.experiment.grid import build_grid
        >>> len(build_grid(protocol())), len(build_grid(protocol(full=True)))
        (45, 135)
    """
    import copy

    return copy.deepcopy(FULL if full else QUICK)
