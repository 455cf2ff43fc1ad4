"""Tuning per loss setting with an equal budget, selection on validation only, and the two-phase protocol.

A *search space* is a plain grid over ``lr`` and ``weight_decay``::

    search = {"lr": [1e-3, 3e-3], "weight_decay": [1e-4, 0.5]}

For every data set, re-split and loss setting (cross-entropy, each γ or ε, each β) the protocol

1. trains one *trial* per point of the search space with the first seed (every setting gets the same
   number of trials: an equal budget);
2. *selects* the point with the highest validation accuracy (ties: lower validation NLL, then the first
   point in the grid's order) — :func:`select` reads ``val_accuracy`` and ``val_nll`` and nothing else;
3. trains the remaining seeds with the selected point. The trial of the first seed with the selected
   point *is* that seed's final run (same config, same key), so nothing is trained twice.

Trials are ordinary runs (:class:`RunConfig` with ``lr``/``weight_decay`` set), so they go to the local
pool or Ray, are stored as they finish and are skipped when the command is run again; the selection is
recomputed from the stored trials, so a killed protocol resumes where it stopped, trials included.

Spec keys on top of :mod:`labelsmooth.experiment.grid`'s: ``search`` (the space; a table keyed by data set
gives one per data set), ``resplits`` (R: splits 0..R−1; a number or a table keyed by data set) and
``val_fraction``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import defaultdict
from typing import Any

from labelsmooth.experiment.config import RunConfig

PROTOCOL_KEYS = ("search", "resplits", "val_fraction")
SEARCH_FIELDS = ("lr", "weight_decay")
#: Fields that are tuned (not part of what makes two runs the "same setting"). The training length is not
#: one: runs of different ``epochs`` are different experiments (e.g. the short and long regimes of the map).
TUNED = ("lr", "weight_decay")
#: The search space of ``labelsmooth sweep`` when none is given (AdamW; decoupled weight decay shrinks the
#: weights by a factor exp(−Σ_t lr_t·wd) over a run: 0.5 is a few to 20 per cent at these schedules).
DEFAULT_SEARCH = {"lr": [1e-3, 3e-3], "weight_decay": [1e-4, 0.5]}


def split_spec(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(grid_spec, protocol)``: the keys :func:`labelsmooth.experiment.grid.build_grid` knows, and the rest."""
    grid_spec = {k: v for k, v in spec.items() if k not in PROTOCOL_KEYS}
    protocol = {k: spec[k] for k in PROTOCOL_KEYS if k in spec}
    return grid_spec, protocol


def search_points(search: dict[str, list] | None) -> list[dict[str, Any]]:
    """Every point of a search space, in a stable order (the grid's order breaks selection ties).

    Example:
        >>> search_points({"lr": [0.001, 0.003], "weight_decay": [0.0001, 0.5]})[1]
        {'lr': 0.001, 'weight_decay': 0.5}
    """
    if not search:
        return [{}]
    unknown = sorted(set(search) - set(SEARCH_FIELDS))
    if unknown:
        raise ValueError(f"Expected search-space fields among {list(SEARCH_FIELDS)}, but got unknown {unknown}")
    names = [n for n in SEARCH_FIELDS if n in search]
    values = []
    for n in names:
        v = search[n]
        v = [v] if isinstance(v, (int, float)) else list(v)
        if not v:
            raise ValueError(f"Expected at least one value for `search.{n}`, but got none")
        values.append([float(x) for x in v])
    return [dict(zip(names, combo)) for combo in itertools.product(*values)]


def _per_dataset(value, dataset: str, default):
    if isinstance(value, dict) and (dataset in value or not set(value) & set(SEARCH_FIELDS)):
        return value.get(dataset, default)
    return default if value is None else value


def _base_grid(spec: dict[str, Any]) -> tuple[list[RunConfig], dict[str, Any], dict[str, list[int]]]:
    """The plain grid (every seed), the protocol keys, and each data set's seeds (``seeds`` may be a table)."""
    from labelsmooth.experiment.grid import DEFAULT_SEEDS, PER_DATASET, build_grid

    grid_spec, protocol = split_spec(spec)
    seeds = grid_spec.get("seeds", DEFAULT_SEEDS)
    datasets = grid_spec.get("datasets") or []
    datasets = [datasets] if isinstance(datasets, str) else list(datasets)
    grid, per = [], {}
    if datasets and isinstance(seeds, dict):
        build_grid({**grid_spec, "seeds": 1})  # the grid's own checks of the whole spec (e.g. `epochs`' keys)
    for ds in datasets:
        s = seeds.get(ds, DEFAULT_SEEDS) if isinstance(seeds, dict) else seeds
        per[ds] = list(range(s)) if isinstance(s, int) else [int(x) for x in s]
        # this data set's entry of each per-data-set table (the others are not of this one-data-set grid)
        own = {k: {ds: v[ds]} for k, v in grid_spec.items() if k in PER_DATASET and isinstance(v, dict) and ds in v}
        rest = {k: v for k, v in grid_spec.items() if not (k in PER_DATASET and isinstance(v, dict))}
        grid += build_grid({**rest, **own, "datasets": [ds], "seeds": s})
    if not datasets:
        grid = build_grid(grid_spec)  # raises the grid's own error
    return grid, protocol, per


def _expand(config: RunConfig, protocol: dict[str, Any]) -> list[tuple[RunConfig, list[dict]]]:
    """The config at each re-split, with the data set's search points."""
    resplits = _per_dataset(protocol.get("resplits"), config.dataset, 1)
    if isinstance(resplits, bool) or not isinstance(resplits, int) or resplits < 1:
        raise ValueError(f"Expected `resplits` to be an integer >= 1, but got {resplits!r}")
    points = search_points(_per_dataset(protocol.get("search"), config.dataset, None))
    fields = {}
    if "val_fraction" in protocol:
        fields["val_fraction"] = float(protocol["val_fraction"])
    return [(dataclasses.replace(config, split=r, **fields), points) for r in range(resplits)]


def trial_configs(spec: dict[str, Any]) -> list[RunConfig]:
    """Phase 1: every setting × re-split × search point, with the first seed.

    Example:
        >>> spec = {"datasets": ["digits"], "models": ["mlp"], "gammas": [0.9], "seeds": 3, "resplits": 2,
        ...         "search": {"lr": [0.001, 0.003], "weight_decay": [0.0001, 0.5]}}
        >>> len(trial_configs(spec))  # 2 settings × 2 splits × 4 points
        16
    """
    grid, protocol, seeds = _base_grid(spec)
    out, seen = [], set()
    for config in grid:
        if config.seed != seeds[config.dataset][0]:
            continue
        for at_split, points in _expand(config, protocol):
            for point in points:
                c = dataclasses.replace(at_split, **point).validate()
                if c.key() not in seen:
                    seen.add(c.key())
                    out.append(c)
    return out


def final_configs(spec: dict[str, Any], runs: list[dict]) -> tuple[list[RunConfig], list[str]]:
    """Phase 2: every seed of every setting × re-split with its selected point; and what could not be selected.

    ``runs`` are store rows; the selection is :func:`select` on them. A setting whose trials all failed is
    left out and named in the second list.
    """
    grid, protocol, _ = _base_grid(spec)
    chosen = select(runs)
    out, missing, seen = [], [], set()
    for config in grid:
        for at_split, points in _expand(config, protocol):
            group = group_of(dataclasses.replace(at_split, **points[0]).to_dict())
            choice = chosen.get(group)
            if choice is None:
                label = f"{at_split.dataset} {at_split.label()} split {at_split.split}"
                if label not in missing:
                    missing.append(label)
                continue
            c = dataclasses.replace(at_split, **choice.point).validate()
            if c.key() not in seen:
                seen.add(c.key())
                out.append(c)
    return out, missing


def group_of(config: dict) -> tuple:
    """What a trial is a trial *of*: the config without the seed and the tuned fields."""
    return tuple(sorted((k, v) for k, v in config.items() if k not in TUNED and k != "seed"))


@dataclasses.dataclass(frozen=True)
class Choice:
    """The selected point of one setting at one split, and the validation numbers it was chosen on."""

    point: dict
    val_accuracy: float
    val_nll: float
    trials: int  # finished trials it was chosen among
    failed: int  # trials that failed (diverged): never chosen
    seed: int  # the tuning seed
    searched: dict = dataclasses.field(default_factory=dict)  # field -> the sorted values its trials tried

    def at_edge(self) -> list[str]:
        """The tuned fields whose chosen value is the smallest or largest one searched (of two or more):
        the best value may lie outside the search space.

        Example:
            >>> Choice({"lr": 0.004}, 0.9, 0.3, 3, 0, 0, {"lr": (0.001, 0.002, 0.004)}).at_edge()
            ['lr (largest)']
        """
        out = []
        for f, values in self.searched.items():
            v = self.point.get(f)
            if len(values) > 1 and v is not None:
                if v == values[-1]:
                    out.append(f"{f} (largest)")
                elif v == values[0]:
                    out.append(f"{f} (smallest)")
        return out


def select(runs: list[dict]) -> dict[tuple, Choice]:
    """The selected search point per :func:`group_of`, from the *validation* metrics of the trials only.

    The trials of a group are its runs with the group's smallest seed. Among the finished ones the highest
    ``val_accuracy`` wins, then the lowest ``val_nll``, then the smallest (lr, weight_decay). Test
    metrics are never read: the selection is the same whatever the test part holds (tests check it).

    Raises:
        ValueError: a group with several search points whose runs carry no validation metrics (stores
            written before the validation split): their selection cannot be made on validation.
    """
    by_group: dict[tuple, list[dict]] = defaultdict(list)
    for r in runs:
        by_group[group_of(r["config"])].append(r)
    out = {}
    for group, members in by_group.items():
        seed = min(r["config"]["seed"] for r in members)
        trials = [r for r in members if r["config"]["seed"] == seed]
        done = [r for r in trials if r["status"] == "done"]
        if not done:
            continue
        points = {tuple(r["config"].get(f) for f in TUNED) for r in trials}
        lacking = [r for r in done if "val_accuracy" not in (r.get("metrics") or {})]
        if lacking and len(points) > 1:
            raise ValueError(
                f"Expected validation metrics (val_accuracy) in every trial of {dict(group).get('dataset')} "
                f"to select among {len(points)} search points, but {len(lacking)} runs have none: they were "
                f"written before the validation split. Run the protocol into a new store."
            )

        def rank(r):
            m = r["metrics"]
            acc = m.get("val_accuracy", math.nan)
            nll = m.get("val_nll", math.nan)
            point = tuple(_sortable(r["config"].get(f)) for f in TUNED)
            return (-(acc if acc == acc else -math.inf), nll if nll == nll else math.inf, point)

        best = min(done, key=rank)
        m = best["metrics"]
        out[group] = Choice(
            point={f: best["config"].get(f) for f in TUNED},
            val_accuracy=m.get("val_accuracy", math.nan),
            val_nll=m.get("val_nll", math.nan),
            trials=len(done),
            failed=len(trials) - len(done),
            seed=seed,
            searched={
                f: tuple(sorted({r["config"].get(f) for r in trials} - {None}))
                for f in TUNED
                if len({r["config"].get(f) for r in trials}) > 1
            },
        )
    return out


def _sortable(v):
    return -math.inf if v is None else v


def finals(runs: list[dict]) -> tuple[list[dict], dict[tuple, Choice]]:
    """The runs that carry a setting's results: every seed at the selected point; and the choices."""
    chosen = select(runs)
    out = []
    for r in runs:
        c = chosen.get(group_of(r["config"]))
        if c is not None and all(r["config"].get(f) == v for f, v in c.point.items()):
            out.append(r)
    return out, chosen


def run_protocol(spec: dict[str, Any], store_path: str, *, progress: bool = True, **sweep_kwargs) -> dict[str, Any]:
    """Phase 1 (trials), selection on validation, phase 2 (the other seeds), all through
    :func:`labelsmooth.experiment.runner.sweep`. Returns the counts of both phases and the configs.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "runs.sqlite")
        >>> spec = {"datasets": ["digits"], "models": ["mlp"], "seeds": 2, "epochs": 1, "train_size": 100,
        ...         "test_size": 50, "search": {"lr": [0.001, 0.003]}}
        >>> out = run_protocol(spec, path, workers=1, progress=False)
        >>> out["trials"]["total"], out["finals"]["total"], len(out["configs"])
        (2, 2, 3)
    """
    from labelsmooth.experiment.runner import sweep
    from labelsmooth.experiment.store import Store

    trials = trial_configs(spec)
    if progress:
        import sys

        print(f"phase 1: {len(trials)} tuning trials (search on validation)", file=sys.stderr)
    c1 = sweep(trials, store_path, progress=progress, **sweep_kwargs)
    with Store(store_path) as store:
        runs = store.runs()
    keys = {c.key() for c in trials}
    finals_, missing = final_configs(spec, [r for r in runs if r["key"] in keys])
    if progress:
        import sys

        print(f"phase 2: {len(finals_)} final runs (every seed at the selected point)", file=sys.stderr)
    c2 = sweep(finals_, store_path, progress=progress, **sweep_kwargs)
    configs = {c.key(): c for c in trials + finals_}
    return {"trials": c1, "finals": c2, "configs": list(configs.values()), "missing": missing}
