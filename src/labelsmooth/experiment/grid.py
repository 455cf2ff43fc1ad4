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
    label_noise = 0.2                    # symmetric label noise on train and validation (optional)

    [[sweep.data]]                       # TOML only: your own data sets, appended to `datasets`
    path = "wine.csv"                    # relative to the config file
    label_column = "target"              # and the other options of user_data.register

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
    "label_noise",
}
#: Seeds per setting when a spec gives none (seeds 0..N-1).
DEFAULT_SEEDS = 3

PER_DATASET = ("epochs", "train_size", "test_size", "batch_size", "lr", "augment")
#: Keys whose values are lists (a single value is taken as a list of one).
LIST_KEYS = {"datasets": str, "models": str, "gammas": float, "smoothings": float, "betas": float}


class SpecError(ValueError):
    """A sweep spec (options or a TOML file) that does not describe a grid; names the key, the rule and
    the value received (and the file)."""


def build_grid(spec: dict[str, Any]) -> list[RunConfig]:
    """Every run of a sweep spec, validated, without duplicates, in a stable order.

    Example:
        >>> g = build_grid({"datasets": ["digits"], "models": ["mlp"], "gammas": [0.9], "seeds": 2})
        >>> [(c.label(), c.seed) for c in g]
        [('ce', 0), ('γ=0.9', 0), ('ce', 1), ('γ=0.9', 1)]
    """
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        raise SpecError(f"Expected sweep keys among {sorted(SPEC_KEYS)}, but got unknown {unknown}")
    datasets = _list(spec, "datasets")
    if not datasets:
        raise SpecError("Expected at least one data set in `datasets`, but got none")
    models = _list(spec, "models") or ["auto"]
    seeds = _seeds(spec.get("seeds", DEFAULT_SEEDS))
    convention = spec.get("convention", "uniform")
    if convention not in ("uniform", "others"):  # checked even when no `smoothings` use it
        raise SpecError(f"Expected `convention` to be one of ['uniform', 'others'], but got {convention!r}")
    for name in PER_DATASET:
        if isinstance(spec.get(name), dict):
            extra = sorted(set(spec[name]) - set(datasets))
            if extra:
                raise SpecError(
                    f"Expected the keys of `{name}` to be data sets of the grid {datasets}, but got {extra}"
                )
    settings: list[dict[str, Any]] = [{"loss": "ce"}]
    settings += [{"loss": "ls", "gamma": g} for g in _list(spec, "gammas")]
    settings += [{"loss": "ls", "smoothing": e, "convention": convention} for e in _list(spec, "smoothings")]
    settings += [{"loss": "cp", "beta": b} for b in _list(spec, "betas")]
    common = {k: spec[k] for k in ("optimizer", "weight_decay", "schedule", "label_noise") if k in spec}
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
    """A sweep spec from a TOML file (``tomllib``; ``tomli`` on Python 3.10): the ``[sweep]`` table, or
    the top level when there is none. A ``data`` key names the user's own data sets (a path, or tables
    ``[[sweep.data]]`` with ``path`` and :func:`labelsmooth.experiment.user_data.register`'s options; relative
    paths are relative to the file): they are registered here and their names appended to ``datasets``, the
    same names ``--data PATH`` gives. Raises :class:`SpecError` naming the file for a missing or
    malformed file, for keys outside ``[sweep]`` when it has one (they would be ignored), and for a bad
    ``data`` entry (naming ``data[i]`` and the key); a data set that does not load raises its DataError,
    prefixed with ``data[i]`` and the file."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise SpecError(f"Cannot read the sweep config {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"Expected TOML in the sweep config {path}, but it does not parse: {exc}") from None
    if "sweep" in data:
        outside = sorted(set(data) - {"sweep"})
        if outside or not isinstance(data["sweep"], dict):
            raise SpecError(
                f"Expected every key of the sweep config {path} inside its [sweep] table, but got {outside} "
                "outside it (they would be ignored): move them below [sweep]"
            )
        data = data["sweep"]
    return _with_user_data(data, path)


def _with_user_data(spec: dict[str, Any], path: str) -> dict[str, Any]:
    """The config's ``data`` entries (the user's own data sets) registered and appended to ``datasets``.

    ``data`` is a path or a list of paths and tables (``[[sweep.data]]``) with ``path`` and the options of
    :func:`labelsmooth.experiment.user_data.register`; relative paths are relative to the config file.
    """
    if "data" not in spec:
        return spec
    import os

    from labelsmooth.experiment.user_data import register_config

    spec = dict(spec)
    names = register_config(spec.pop("data"), base=os.path.dirname(os.path.abspath(path)), where=path)
    given = spec.get("datasets")
    given = [] if given is None else [given] if isinstance(given, str) else given
    if not isinstance(given, list):
        raise SpecError(f"Expected `datasets` in {path} to be a list of names, but got {given!r}")
    spec["datasets"] = list(given) + names
    return spec


def _list(spec: dict[str, Any], name: str) -> list:
    value = spec.get(name)
    if value is None:
        return []
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise SpecError(f"Expected `{name}` to be a list, but got {value!r} ({type(value).__name__})")
    kind = LIST_KEYS.get(name)
    for v in value:
        ok = isinstance(v, str) if kind is str else isinstance(v, (int, float)) and not isinstance(v, bool)
        if kind is not None and not ok:
            what = "names" if kind is str else "numbers"
            raise SpecError(f"Expected `{name}` to be a list of {what}, but got {v!r} ({type(v).__name__})")
    return [float(v) for v in value] if kind is float else list(value)


def _seeds(value: object) -> list[int]:
    """``N`` (seeds 0..N-1) or a list of distinct seeds, each an integer >= 0."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise SpecError(f"Expected `seeds` to be >= 1 (or a non-empty list of seeds), but got {value}")
        return list(range(value))
    if not isinstance(value, (list, tuple)):
        raise SpecError(
            f"Expected `seeds` to be a number of seeds N (seeds 0..N-1) or a list of seeds, but got {value!r} "
            f"({type(value).__name__})"
        )
    if not value:
        raise SpecError("Expected `seeds` to be >= 1 (or a non-empty list of seeds), but got []")
    for s in value:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise SpecError(f"Expected every seed in `seeds` to be an integer >= 0, but got {s!r} ({type(s).__name__})")
    return list(value)


def _per_dataset(spec: dict[str, Any], name: str, dataset: str):
    value = spec[name]
    return value.get(dataset) if isinstance(value, dict) else value
