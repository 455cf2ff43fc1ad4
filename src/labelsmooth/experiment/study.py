"""A study with the user's own training loop: ``study(train_fn, data, store=...)``, under the protocol.

The user supplies the training; labelsmooth supplies the loss of each setting (cross-entropy, γ, ε in
either convention, the confidence penalty β), the seeds, the tuning, the store, the statistics and the
report: the protocol of ``labelsmooth sweep`` (docs/experiments.md, "The protocol")::

    def train_fn(loss_fn, data, hparams, seed):
        # loss_fn(logits (N, K), target (N,)) -> scalar; data: Splits with x_train, y_train, x_val, y_val,
        # x_test, y_test (tensors), classes; hparams: your fixed `hparams` plus the search point
        # (e.g. {"lr": 0.003, "weight_decay": 0.0001, "epochs": 5}); torch is seeded with `seed`.
        ...
        return {"val": model(data.x_val), "test": model(data.x_test)}   # logits (N, K)

    result = study(train_fn, "wine.csv", label_column="target", gammas=[0.9, 0.8], seeds=5,
                   search={"lr": [1e-3, 1e-2]}, hparams={"epochs": 5},
                   store="wine.sqlite", report="wine-report")
    print(result.verdicts)

The protocol, with :mod:`labelsmooth.experiment.tuning`'s own functions (the sweep's, not a copy):

1. Parts: the data set's train/validation/test parts from
   :func:`labelsmooth.experiment.splits.make_splits` (validation carved stratified from the training
   part, ``val_fraction``, seed ``VAL_SEED + split``; ``resplits`` R repeats over R partitions), exactly
   as a sweep's runs get them.
2. Tuning (:func:`~labelsmooth.experiment.tuning.trial_configs`): every setting × split gets one trial per
   point of ``search`` (a grid over ``lr`` and ``weight_decay``; the same budget for every
   setting) with the first seed.
3. Selection on validation only (:func:`~labelsmooth.experiment.tuning.final_configs`, which uses
   :func:`~labelsmooth.experiment.tuning.select`): highest validation accuracy, then lowest validation
   NLL, then the grid's order. Then every other seed runs at the selected point.
4. Each run's metrics are :func:`labelsmooth.experiment.metrics.protocol_metrics`: test metrics raw and
   after temperature scaling fitted on the validation logits, and the validation accuracy and NLL. Both
   logits are stored as predictions (float16), so :func:`labelsmooth.experiment.stats.analyse` runs the
   paired two-level bootstrap (seed and test-set noise) and McNemar, with Holm across settings.

How ``train_fn`` gets its hyperparameters: ``hparams`` is a new dict per call, the fixed ``hparams`` given
to :func:`study` plus the searched fields of the run's point (only those in ``search``; a field both
fixed and searched is refused). The searched values are also the run's ``RunConfig.lr`` /
``weight_decay``, so they are in its key and the report shows the chosen point; the fixed
``hparams`` enter the key through a hash in the model name. Without ``search`` there is no tuning: one
point, the fixed ``hparams``, and each seed is one run. ``train_fn`` must return validation logits: the
selection and the temperature are fitted on them.

Each (setting, split, point, seed) is one run keyed like a sweep's, so rerunning the same study skips the
finished runs (trials included) and resumes a killed one. A ``train_fn`` that raises, or returns logits
of the wrong shape or non-finite ones, is stored as a ``failed`` run with its traceback and the study goes
on; a setting whose trials all failed is named in :attr:`StudyResult.missing`. :func:`record_of` is the
one place that turns a ``train_fn`` result into a stored run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from labelsmooth.experiment import data as data_module
from labelsmooth.experiment import user_data
from labelsmooth.experiment.config import RunConfig
from labelsmooth.experiment.models import is_user_model
from labelsmooth.experiment.splits import DEFAULT_VAL_FRACTION, Splits, make_splits
from labelsmooth.experiment.store import Store

#: The store keeps logits as float16: larger magnitudes would be stored as infinity.
FLOAT16_MAX = 65504.0


@dataclasses.dataclass
class StudyResult:
    """What :func:`study` returns: the counts, the study's stored runs, the analysis and the report paths.

    ``counts`` adds up both phases over the study's distinct runs (a trial at the selected point is also
    that seed's final run, counted once); ``phases`` has ``{"trials": counts, "finals": counts}`` as the
    runs were met in each; ``missing`` names each setting × split whose trials all failed (not selected,
    so without final runs).
    """

    counts: dict[str, int]
    runs: list[dict]
    analysis: Any  # labelsmooth.experiment.stats.Analysis
    report: dict | None = None
    phases: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    missing: list[str] = dataclasses.field(default_factory=list)

    @property
    def verdicts(self) -> dict[str, str]:
        return self.analysis.verdicts


def study(
    train_fn: Callable[..., Any],
    data,
    *,
    store: str,
    gammas: Sequence[float] = (),
    smoothings: Sequence[float] = (),
    convention: str = "uniform",
    betas: Sequence[float] = (),
    seeds: int | Sequence[int] = 3,
    search: dict[str, Sequence[float]] | None = None,
    hparams: dict | None = None,
    resplits: int = 1,
    name: str | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    retry_failed: bool = False,
    report: str | None = None,
    title: str | None = None,
    threads: int | None = None,
    **data_options,
) -> StudyResult:
    """Run the protocol (module docstring) with ``train_fn`` as the training; store, analyse, report.

    Args:
        train_fn: ``train_fn(loss_fn, data, hparams, seed)`` returning ``{"val": logits, "test": logits}``
            or ``(val, test)``: logits (N, K) on ``data.x_val`` and ``data.x_test``. Called with torch's
            global RNG seeded with ``seed`` (restored afterwards).
        data: a data set name (built-in or registered), or anything
            :func:`labelsmooth.experiment.user_data.register` takes (with ``data_options``).
        store: the SQLite store to write (created if missing; shared with sweeps is fine).
        gammas, smoothings, convention, betas: the settings besides cross-entropy (as ``labelsmooth sweep``).
        seeds: a number N (seeds 0..N-1) or a list of seeds; the first one tunes.
        search: the search space, ``{"lr": [...], "weight_decay": [...]}`` (either or both;
            :func:`labelsmooth.experiment.tuning.search_points`); None: no tuning. The sweep's
            default is :data:`labelsmooth.experiment.tuning.DEFAULT_SEARCH` (for AdamW): pass it to use it.
        hparams: a JSON-serialisable dict of fixed hyperparameters, merged with the search point into the
            dict each call gets; its hash is part of the run keys.
        resplits: R train/validation partitions (splits 0..R−1; a unit of the statistics is split × seed).
        name: the training function's name in the store (default ``module:qualname``); change it when
            the function's code changes, or its old runs are reused.
        val_fraction: the validation share carved out of the training part when the data set gives none.
        retry_failed: run failed runs again.
        report: a folder to write the report (Markdown + HTML) of the study's runs into.
        title: the report's title.
        threads: torch's intra-op thread count while ``train_fn`` runs (restored afterwards); None keeps it.
        data_options: passed to :func:`~labelsmooth.experiment.user_data.register` (``label_column``, ...).

    Returns:
        A :class:`StudyResult`.

    Raises:
        ValueError/TypeError: a bad argument, naming it (before anything runs).
    """
    from labelsmooth.experiment import tuning

    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"Expected `threads` to be an integer >= 1 or None, but got {threads!r}")
    if not callable(train_fn):
        raise TypeError(f"Expected `train_fn` to be callable, but got {type(train_fn).__name__}")
    if isinstance(resplits, bool) or not isinstance(resplits, int) or resplits < 1:
        raise ValueError(f"Expected `resplits` to be an integer >= 1, but got {resplits!r}")
    if search is not None and not isinstance(search, dict):
        raise TypeError(f"Expected `search` to be a dict such as {{'lr': [0.001, 0.01]}}, but got {search!r}")
    tuning.search_points(search)  # its own errors, naming the field
    hparams = dict(hparams or {})
    both = sorted(set(hparams) & set(search or {}))
    if both:
        raise ValueError(
            f"Expected each hyperparameter either fixed (`hparams`) or searched (`search`), but got {both} in both"
        )
    try:
        blob = json.dumps(hparams, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"Expected `hparams` to be a JSON-serialisable dict, but got {hparams!r}: {exc}") from None
    dataset_name = _dataset_name(data, data_options)
    model = re.sub(r"[^\w.:]", "_", name or f"{train_fn.__module__}:{train_fn.__qualname__}")
    if not is_user_model(model):  # the module:callable form every model name of a RunConfig has
        model = "study:" + model.replace(":", "_")
    if hparams:
        model += ".hparams_" + hashlib.sha256(blob.encode()).hexdigest()[:12]
    spec: dict[str, Any] = {"datasets": [dataset_name], "models": [model], "seeds": seeds, "convention": convention}
    spec |= {"gammas": list(gammas), "smoothings": list(smoothings), "betas": list(betas)}
    spec |= {"resplits": resplits, "val_fraction": val_fraction}
    if search:
        spec["search"] = dict(search)
    trials = tuning.trial_configs(spec)  # validates the whole spec before anything is read or run
    searched = sorted(search or {})
    full = data_module.load(dataset_name)
    parts: dict[tuple, Splits] = {}

    def run(config: RunConfig) -> dict:
        where = (config.split, config.val_fraction)
        if where not in parts:
            parts[where] = make_splits(full, config.split, config.val_fraction)
        split = parts[where]
        point = {f: getattr(config, f) for f in searched}
        given = hparams | point
        created = time.time()
        try:
            with torch.random.fork_rng(devices=[]), _threads(threads):
                torch.manual_seed(config.seed)
                out = train_fn(_make_loss(config, split.num_classes), split, dict(given), config.seed)
            seconds = time.time() - created
            record = record_of(config, out, split, hparams=given, created=created)
            record["timings"] = {"train": seconds, "total": seconds}
        except Exception as exc:  # stored, never raised: one failure must not stop the study
            record = failed_record(config, exc, created)
            print(f"study: {config.label()} seed {config.seed} failed: {record['error']}", file=sys.stderr)
        return record

    from labelsmooth.experiment.runner import pending
    from labelsmooth.experiment.train import machine

    counts = {"total": 0, "skipped": 0, "done": 0, "failed": 0}
    phases: dict[str, dict[str, int]] = {}
    ran: set[str] = set()
    with Store(store) as s:
        for phase in ("trials", "finals"):
            if phase == "trials":
                configs, missing = trials, []
            else:
                keys = {c.key() for c in trials}
                configs, missing = tuning.final_configs(spec, [r for r in s.runs() if r["key"] in keys])
            todo = pending(configs, s, retry_failed) + _pre_protocol(configs, s, retry_failed)
            todo = [c for c in todo if c.key() not in ran]
            c = {"total": len(configs), "skipped": len(configs) - len(todo), "done": 0, "failed": 0}
            if todo:
                threads_per_run = threads or torch.get_num_threads()
                sweep_id = s.start_sweep(
                    f"study({model}) {phase}", "study", 1, len(todo), machine() | {"threads_per_run": threads_per_run}
                )
                for config in todo:
                    record = run(config)
                    s.put(record)
                    ran.add(config.key())
                    c[record["status"]] += 1
                s.finish_sweep(sweep_id)
            phases[phase] = c
        for line in missing:
            print(f"study: not selected (every trial failed): {line}", file=sys.stderr)
        keys = {c.key() for c in trials} | {c.key() for c in configs}
        runs = [r for r in s.runs() if r["key"] in keys]
        predictions = s.predictions(keys)
        sweeps = s.sweeps()
    counts["total"] = len(keys)
    counts["done"] = sum(p["done"] for p in phases.values())
    counts["failed"] = sum(p["failed"] for p in phases.values())
    counts["skipped"] = counts["total"] - counts["done"] - counts["failed"]
    from labelsmooth.experiment.stats import analyse

    written = None
    if report is not None:
        from labelsmooth.experiment.report import write_report

        title = title or f"Study of {_short(dataset_name)}"
        written = write_report(runs, sweeps, report, title=title, predictions=predictions)
    return StudyResult(counts, runs, analyse(runs, predictions), written, phases, missing)


def _make_loss(config: RunConfig, num_classes: int):
    from labelsmooth.experiment.train import make_loss

    return make_loss(config, num_classes)


def _pre_protocol(configs: list[RunConfig], store: Store, retry_failed: bool) -> list[RunConfig]:
    """Finished runs of ``configs`` written by the study before it followed the protocol (no validation
    metrics in ``metrics``): they are run again, since their validation part was another draw."""
    status = store.status()
    done = [c for c in configs if status.get(c.key()) == "done"]
    if not done:
        return []
    keys = {c.key() for c in done}
    old = {r["key"] for r in store.runs(status="done") if r["key"] in keys and "val_accuracy" not in r["metrics"]}
    if old:
        print(
            f"study: {len(old)} runs in the store predate the protocol (no validation metrics); running them again",
            file=sys.stderr,
        )
    return [c for c in done if c.key() in old]


@contextlib.contextmanager
def _threads(threads: int | None):
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _short(name: str) -> str:
    return user_data.short_name(name) if user_data.is_user_name(name) else name


def _dataset_name(data, options: dict) -> str:
    if isinstance(data, str) and (data in data_module.DATASETS or user_data.is_user_name(data)):
        if options:
            raise ValueError(f"Expected no data options with the data set name {data!r}, but got {sorted(options)}")
        return data
    return user_data.register(data, **options)


def with_validation(dataset: data_module.Dataset, fraction: float = DEFAULT_VAL_FRACTION) -> Splits:
    """The parts a study's ``train_fn`` gets at split 0: :func:`labelsmooth.experiment.splits.make_splits`
    (the data set's own validation part, or ``fraction`` of the training part, stratified)."""
    return make_splits(dataset, 0, fraction)


def _logits(value, what: str, n: int, K: int) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"Expected the {what} logits to be a tensor, but got {type(value).__name__}")
    value = value.detach().to("cpu", torch.float64)
    if tuple(value.shape) != (n, K):
        raise ValueError(
            f"Expected {what} logits of shape ({n}, {K}) (examples, classes), but got {tuple(value.shape)}"
        )
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"Expected finite {what} logits, but got {int((~torch.isfinite(value)).sum())} NaN or inf")
    top = float(value.abs().max())
    if top > FLOAT16_MAX:
        raise ValueError(
            f"Expected {what} logits within ±{FLOAT16_MAX:g} (the store keeps them as float16), but got "
            f"|logit| up to {top:.4g}"
        )
    return value


def record_of(
    config: RunConfig,
    result,
    dataset,
    *,
    hparams: dict | None = None,
    created: float | None = None,
) -> dict:
    """The store record of one ``train_fn`` result, with the metrics and predictions of a sweep's run.

    ``result`` is ``{"test": ..., "val": ...}`` or ``(val, test)``: logits on ``dataset.x_val`` and
    ``dataset.x_test``; shapes are checked against the data set (ValueError/TypeError naming the part, the
    test part first). ``metrics`` are :func:`labelsmooth.experiment.metrics.protocol_metrics` of the logits
    as returned (in float64): test metrics raw and temperature-scaled with T fitted on validation, and the
    validation accuracy and NLL (what :func:`labelsmooth.experiment.tuning.select` reads). ``predictions``
    keep both parts (the store rounds them to float16). The one seam between a user's training and the store.
    """
    from labelsmooth.experiment.metrics import evaluate, protocol_metrics, reliability_bins
    from labelsmooth.experiment.train import versions

    if isinstance(result, dict):
        unknown = sorted(set(result) - {"test", "val"})
        if unknown or "test" not in result:
            raise ValueError(
                f"Expected train_fn to return a dict with 'val' and 'test' logits, but got keys {sorted(result)}"
            )
        test, val = result["test"], result.get("val")
    elif isinstance(result, (tuple, list)) and len(result) == 2:
        val, test = result
    else:
        test, val = result, None
    K = dataset.num_classes
    test = _logits(test, "test", len(dataset.y_test), K)
    if val is None:
        raise ValueError(
            "Expected train_fn to return validation logits too ({'val': ..., 'test': ...} or (val, test)): the "
            "protocol selects hyperparameters and fits the temperature on them"
        )
    if getattr(dataset, "y_val", None) is None:
        raise ValueError("Expected a data set with a validation part (make_splits gives one), but it has none")
    val = _logits(val, "validation", len(dataset.y_val), K)
    metrics = protocol_metrics(val, dataset.y_val, test, dataset.y_test)
    extra: dict[str, Any] = {"hparams": hparams or {}, "data": _data_info(dataset)}
    extra["val_metrics"] = evaluate(val, dataset.y_val)
    return {
        "key": config.key(),
        "status": "done",
        "config": config.to_dict(),
        "metrics": metrics,
        "reliability": reliability_bins(test, dataset.y_test),
        "reliability_ts": reliability_bins(test / metrics["temperature"], dataset.y_test),
        "predictions": {
            "val": {"logits": val.numpy(), "labels": dataset.y_val.numpy()},
            "test": {"logits": test.numpy(), "labels": dataset.y_test.numpy()},
        },
        "versions": versions(),
        "extra": extra,
        "backend": "study",
        "created": created if created is not None else time.time(),
        "finished": time.time(),
    }


def failed_record(config: RunConfig, exc: BaseException, created: float) -> dict:
    """The store record of a run whose training raised: the error and its traceback."""
    from labelsmooth.experiment.runner import failed_record as record

    return record(config, exc, created, backend="study")


def _data_info(dataset) -> dict:
    info = user_data.describe(dataset)
    return {
        "source": dataset.source,
        "train_size": len(dataset.y_train),
        "val_size": None if dataset.y_val is None else len(dataset.y_val),
        "test_size": len(dataset.y_test),
        "num_classes": dataset.num_classes,
        "input_shape": list(dataset.input_shape),
        "classes": info["classes"],
        "class_counts": info["counts"]["train"],
    }
