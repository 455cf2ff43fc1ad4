"""The grid of a sweep: data sets × models × loss settings × seeds, as a list of :class:`RunConfig`.

Plain cross-entropy is always in the grid (the baseline every setting is compared with). A spec is a
dict with the keys below (the CLI's options, or a TOML file with the same names)::

    datasets = ["digits", "mnist1d"]     # required
    models = ["mlp"]                     # or ["auto"]: default_model(dataset)
    gammas = [0.95, 0.9]                 # label smoothing, γ on the true class (the "others" convention)
    smoothings = [0.1]                   # label smoothing ε in `convention` ("uniform" or "others")
    convention = "uniform"
    betas = [0.5]                        # confidence penalty β
    seeds = 3                            # seeds 0..N-1 (or a list of seeds)
    epochs = 5                           # or a table {digits = 20, ...}
    batch_size, lr, optimizer, weight_decay, schedule, augment, train_size, test_size  # optional

``train_size``/``test_size``/``epochs`` may be a number or a table keyed by data set.
"""

from __future__ import annotations

from typing import Any

from labelsmooth.experiment.config import RunConfig

SPEC_KEYS = {
    "datasets",
    "models",
    "gammas",
    "smoothings",
    "convention",
    "betas",
    "seeds",
    "epochs",
    "batch_size",
    "lr",
    "optimizer",
    "weight_decay",
    "schedule",
    "augment",
    "train_size",
    "test_size",
}
PER_DATASET = ("epochs", "train_size", "test_size", "batch_size", "lr", "augment")


def build_grid(spec: dict[str, Any]) -> list[RunConfig]:
    """Every run of a sweep spec, validated, without duplicates, in a stable order.

    Example:
        >>> g = build_grid({"datasets": ["digits"], "models": ["mlp"], "gammas": [0.9], "seeds": 2})
        >>> [(c.label(), c.seed) for c in g]
        [('ce', 0), ('γ=0.9', 0), ('ce', 1), ('γ=0.9', 1)]
    """
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        raise ValueError(f"Expected sweep keys among {sorted(SPEC_KEYS)}, but got unknown {unknown}")
    datasets = _list(spec, "datasets")
    if not datasets:
        raise ValueError("Expected at least one data set in `datasets`, but got none")
    models = _list(spec, "models") or ["auto"]
    seeds = spec.get("seeds", 3)
    seeds = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seeds:
        raise ValueError(f"Expected `seeds` to be >= 1 (or a non-empty list), but got {spec.get('seeds')!r}")
    convention = spec.get("convention", "uniform")
    settings: list[dict[str, Any]] = [{"loss": "ce"}]
    settings += [{"loss": "ls", "gamma": float(g)} for g in _list(spec, "gammas")]
    settings += [{"loss": "ls", "smoothing": float(e), "convention": convention} for e in _list(spec, "smoothings")]
    settings += [{"loss": "cp", "beta": float(b)} for b in _list(spec, "betas")]
    common = {k: spec[k] for k in ("optimizer", "weight_decay", "schedule") if k in spec}
    out: list[RunConfig] = []
    seen: set[str] = set()
    for dataset in datasets:
        per = {k: _per_dataset(spec, k, dataset) for k in PER_DATASET if k in spec}
        per = {k: v for k, v in per.items() if v is not None}
        for model in models:
            if model == "auto":
                from labelsmooth.experiment.models import default_model

                model = default_model(dataset)
            for seed in seeds:
                for setting in settings:
                    config = RunConfig(dataset=dataset, model=model, seed=seed, **setting, **per, **common)
                    config.validate()
                    if config.key() not in seen:
                        seen.add(config.key())
                        out.append(config)
    return out


def read_toml(path: str) -> dict[str, Any]:
    """A sweep spec from a TOML file (``tomllib``; ``tomli`` on Python 3.10)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    with open(path, "rb") as f:
        data = tomllib.load(f)
    return data.get("sweep", data)


def _list(spec: dict[str, Any], name: str) -> list:
    value = spec.get(name) or []
    if isinstance(value, (str, int, float)):
        value = [value]
    return list(value)


def _per_dataset(spec: dict[str, Any], name: str, dataset: str):
    value = spec[name]
    return value.get(dataset) if isinstance(value, dict) else value
