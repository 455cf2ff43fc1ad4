"""A study with the user's own training loop: ``study(train_fn, data, store=...)``.

The user supplies the training; labelsmooth supplies the loss of each setting (cross-entropy, γ, ε in
either convention, the confidence penalty β), the seeds, the store, the statistics and the report::

    def train_fn(loss_fn, data, hparams, seed):
        # loss_fn(logits (N, K), target (N,)) -> scalar; data: a Dataset with x_train, y_train, x_val,
        # y_val, x_test, y_test (tensors), classes; hparams: the dict given to study(); torch is seeded.
        ...
        return {"val": model(data.x_val), "test": model(data.x_test)}   # logits (N, K)

    result = study(train_fn, "wine.csv", label_column="target", gammas=[0.9, 0.8], seeds=5,
                   store="wine.sqlite", report="wine-report")
    print(result.verdicts)

Each (setting, seed) is one run, keyed like a sweep's (a :class:`RunConfig` whose ``model`` names the
training function and a hash of ``hparams``), so rerunning the same study skips the finished runs. The
config's training fields (``epochs``, ``lr``, ``batch_size``, ...) keep their defaults and mean nothing
for a study: the training is the function's, its knobs are ``hparams``. A
``train_fn`` that raises, or returns logits of the wrong shape or non-finite ones, is stored as a
``failed`` run with its traceback and the study goes on. :func:`record_of` is the one place that turns a
``train_fn`` result into a stored run.

Validation: where the data set gives no validation part, ``val_fraction`` of the training part is held
out (stratified, seed :data:`labelsmooth.experiment.data.DATA_SEED`) and ``data.x_train`` is the rest.
The validation logits are scored and stored (``extra.val_metrics``); the statistics and the report
compare the settings on the test logits, as a sweep does.
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
from labelsmooth.experiment.grid import build_grid
from labelsmooth.experiment.models import is_user_model
from labelsmooth.experiment.store import Store

DEFAULT_VAL_FRACTION = 0.2


@dataclasses.dataclass
class StudyResult:
    """What :func:`study` returns: the counts, the study's stored runs, the analysis and the report paths."""

    counts: dict[str, int]
    runs: list[dict]
    analysis: Any  # labelsmooth.experiment.stats.Analysis
    report: dict | None = None

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
    hparams: dict | None = None,
    name: str | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    retry_failed: bool = False,
    report: str | None = None,
    title: str | None = None,
    threads: int | None = None,
    **data_options,
) -> StudyResult:
    """Run ``train_fn`` for cross-entropy and every setting × seed; store, analyse and optionally report.

    Args:
        train_fn: ``train_fn(loss_fn, data, hparams, seed)`` returning the logits on ``data.x_test`` as a
            tensor, or ``{"test": ..., "val": ...}``, or ``(val, test)``. Called with torch's global RNG
            seeded with ``seed`` (restored afterwards).
        data: a data set name (built-in or registered), or anything
            :func:`labelsmooth.experiment.user_data.register` takes (with ``data_options``).
        store: the SQLite store to write (created if missing; shared with sweeps is fine).
        gammas, smoothings, convention, betas: the settings besides cross-entropy (as ``labelsmooth sweep``).
        seeds: a number N (seeds 0..N-1) or a list of seeds.
        hparams: a JSON-serialisable dict passed to every call; its hash is part of the run keys.
        name: the training function's name in the store (default ``module:qualname``); change it when
            the function's code changes, or its old runs are reused.
        val_fraction: the validation share held out of the training part when the data set gives none.
        retry_failed: run failed runs again.
        report: a folder to write the report (Markdown + HTML) of the study's runs into.
        title: the report's title.
        threads: torch's intra-op thread count while ``train_fn`` runs (restored afterwards); None keeps it.
        data_options: passed to :func:`~labelsmooth.experiment.user_data.register` (``label_column``, ...).

    Returns:
        A :class:`StudyResult`.
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"Expected `threads` to be an integer >= 1 or None, but got {threads!r}")
    if not callable(train_fn):
        raise TypeError(f"Expected `train_fn` to be callable, but got {type(train_fn).__name__}")
    dataset_name = _dataset_name(data, data_options)
    hparams = dict(hparams or {})
    try:
        blob = json.dumps(hparams, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"Expected `hparams` to be a JSON-serialisable dict, but got {hparams!r}: {exc}") from None
    model = re.sub(r"[^\w.:]", "_", name or f"{train_fn.__module__}:{train_fn.__qualname__}")
    if not is_user_model(model):  # the module:callable form every model name of a RunConfig has
        model = "study:" + model.replace(":", "_")
    if hparams:
        model += ".hparams_" + hashlib.sha256(blob.encode()).hexdigest()[:12]
    spec = {"datasets": [dataset_name], "models": [model], "seeds": seeds, "convention": convention}
    spec |= {"gammas": list(gammas), "smoothings": list(smoothings), "betas": list(betas)}
    configs = build_grid(spec)
    full = data_module.load(dataset_name)
    split = with_validation(full, val_fraction)
    counts = {"total": len(configs), "skipped": 0, "done": 0, "failed": 0}
    from labelsmooth.experiment.runner import pending
    from labelsmooth.experiment.train import machine, make_loss

    with Store(store) as s:
        todo = pending(configs, s, retry_failed)
        counts["skipped"] = len(configs) - len(todo)
        if todo:
            threads_per_run = threads or torch.get_num_threads()
            sweep_id = s.start_sweep(
                f"study({model})", "study", 1, len(todo), machine() | {"threads_per_run": threads_per_run}
            )
            for config in todo:
                created = time.time()
                try:
                    with torch.random.fork_rng(devices=[]), _threads(threads):
                        torch.manual_seed(config.seed)
                        out = train_fn(make_loss(config, split.num_classes), split, dict(hparams), config.seed)
                    seconds = time.time() - created
                    record = record_of(config, out, split, hparams=hparams, created=created)
                    record["timings"] = {"train": seconds, "total": seconds}
                except Exception as exc:  # stored, never raised: one failure must not stop the study
                    record = failed_record(config, exc, created)
                    print(f"study: {config.label()} seed {config.seed} failed: {record['error']}", file=sys.stderr)
                s.put(record)
                counts[record["status"]] += 1
            s.finish_sweep(sweep_id)
        keys = {c.key() for c in configs}
        runs = [r for r in s.runs() if r["key"] in keys]
        sweeps = s.sweeps()
    from labelsmooth.experiment.stats import analyse

    written = None
    if report is not None:
        from labelsmooth.experiment.report import write_report

        written = write_report(runs, sweeps, report, title=title or f"Study of {_short(dataset_name)}")
    return StudyResult(counts, runs, analyse(runs), written)


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


def with_validation(dataset: data_module.Dataset, fraction: float = DEFAULT_VAL_FRACTION) -> data_module.Dataset:
    """``dataset`` with a validation part: its own, or ``fraction`` of the training part (stratified, seed DATA_SEED)."""
    if dataset.x_val is not None:
        return dataset
    from sklearn.model_selection import train_test_split

    y = dataset.y_train.numpy()
    try:
        idx_tr, idx_val = train_test_split(
            range(len(y)), test_size=fraction, stratify=y, random_state=data_module.DATA_SEED
        )
    except ValueError as exc:
        raise data_module.DataError(
            f"Cannot hold out a stratified validation part of {fraction:g} from the {len(y)} training examples "
            f"of {dataset.source}: {exc}"
        ) from None
    idx_tr, idx_val = torch.tensor(sorted(idx_tr)), torch.tensor(sorted(idx_val))
    return dataclasses.replace(
        dataset,
        x_train=dataset.x_train[idx_tr],
        y_train=dataset.y_train[idx_tr],
        x_val=dataset.x_train[idx_val],
        y_val=dataset.y_train[idx_val],
    )


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
    return value


def record_of(
    config: RunConfig,
    result,
    dataset: data_module.Dataset,
    *,
    hparams: dict | None = None,
    created: float | None = None,
) -> dict:
    """The store record of one ``train_fn`` result: metrics of the test logits, validation metrics in ``extra``.

    ``result`` is the test logits, ``{"test": ..., "val": ...}`` or ``(val, test)``; shapes are checked
    against the data set (ValueError/TypeError naming the part). The one seam between a user's training
    and the store.
    """
    from labelsmooth.experiment.metrics import evaluate, reliability_bins
    from labelsmooth.experiment.train import versions

    if isinstance(result, dict):
        unknown = sorted(set(result) - {"test", "val"})
        if unknown or "test" not in result:
            raise ValueError(
                f"Expected train_fn to return a dict with 'test' (and 'val') logits, but got keys {sorted(result)}"
            )
        test, val = result["test"], result.get("val")
    elif isinstance(result, (tuple, list)) and len(result) == 2:
        val, test = result
    else:
        test, val = result, None
    K = dataset.num_classes
    test = _logits(test, "test", len(dataset.y_test), K)
    extra: dict[str, Any] = {"hparams": hparams or {}, "data": _data_info(dataset)}
    if val is not None:
        if dataset.y_val is None:
            raise ValueError("Expected no validation logits: the data set has no validation part")
        extra["val_metrics"] = evaluate(_logits(val, "validation", len(dataset.y_val), K), dataset.y_val)
    return {
        "key": config.key(),
        "status": "done",
        "config": config.to_dict(),
        "metrics": evaluate(test, dataset.y_test),
        "reliability": reliability_bins(test, dataset.y_test),
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


def _data_info(dataset: data_module.Dataset) -> dict:
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
