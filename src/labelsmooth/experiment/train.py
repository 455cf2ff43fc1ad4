"""One training run: ``train(config) -> dict`` (a JSON-serialisable record of the run).

The loop is a plain PyTorch loop over in-memory tensors (no DataLoader): shuffle with a seeded
``torch.Generator``, optionally augment the batch (random crop with zero padding, horizontal flip where it
makes sense), step the optimiser (AdamW, or SGD with momentum) under a per-step cosine schedule, and
measure the validation accuracy after every epoch. The data are split into train, validation and test by
:func:`labelsmooth.experiment.splits.make_splits` (``config.split``, ``config.val_fraction``); the model
trains on the training part only, and the test part is read once, after training, for the final numbers.
The final logits of validation and test are rounded to float16 and every metric is computed from the
rounded logits, so the stored predictions reproduce the metrics exactly. The loss comes from the library:

- ``ce``: :func:`labelsmooth.cross_entropy` without smoothing;
- ``ls`` with ``gamma`` γ: :func:`labelsmooth.cross_entropy` with ``label_smoothing = 1 − γ`` and
  ``convention="others"`` (γ on the true class, (1 − γ)/(K − 1) on each other);
  with ``smoothing`` ε: ``label_smoothing = ε`` in the given ``convention``;
- ``cp``: :class:`labelsmooth.ConfidencePenaltyLoss` with ``beta`` β (CE − β·H(p)).

Same config, same machine, same thread count: identical metrics (seeded initialisation, shuffling and
augmentation; ``torch.use_deterministic_algorithms`` during the run).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

import labelsmooth
from labelsmooth.experiment import data as data_module
from labelsmooth.experiment.config import DEFAULT_LR, RunConfig
from labelsmooth.experiment.metrics import protocol_metrics, reliability_bins
from labelsmooth.experiment.models import build
from labelsmooth.experiment.splits import Splits, make_splits, with_label_noise

#: The learning rate when ``config.lr`` is None.
EVAL_BATCH = 512


class TrainingDiverged(RuntimeError):
    """The training loss (or the test logits) became NaN or infinite."""


def train(
    config: RunConfig,
    *,
    data_dir: str | None = None,
    progress: bool = True,
    threads: int | None = None,
) -> dict:
    """Train ``config.model`` on the training part of ``config.dataset``; evaluate on validation and test.

    Args:
        config: the run; validated first (ValueError/TypeError naming the field).
        data_dir: an extra folder to look for data files in (see :mod:`labelsmooth.experiment.data`).
        progress: show a tqdm progress bar on stderr.
        threads: torch's intra-op thread count for this run (restored afterwards); None keeps the current one.

    Returns:
        A dict with ``config`` (``config.to_dict()``), ``key``, ``metrics``
        (:data:`labelsmooth.experiment.metrics.PROTOCOL_METRICS`: test metrics raw and temperature-scaled,
        the temperature fitted on validation, validation accuracy and NLL), ``reliability`` and
        ``reliability_ts`` (the final test logits' equal-width confidence bins before and after temperature
        scaling, :func:`labelsmooth.experiment.metrics.reliability_bins`), ``predictions``
        (``{"val": {"logits", "labels"}, "test": {...}}``: float16 logits (n, K) and int64 labels as numpy
        arrays), ``curves`` (per-epoch ``train_loss`` and ``val_accuracy``),
        ``timings`` (seconds: ``data``, ``train``, ``eval``, ``total``), ``settings`` (resolved values such
        as the learning rate), ``data`` (source and sizes), ``versions`` and ``machine``.

    Raises:
        TrainingDiverged: if the training loss becomes NaN or infinite.

    Example:
        >>> r = train(RunConfig("digits", "mlp", epochs=1, train_size=200, test_size=100), progress=False)
        >>> r["metrics"]["temperature"] > 0, r["predictions"]["test"]["logits"].shape
        (True, (100, 10))
        >>> sum(r["reliability"]["count"])  # every test example in one confidence bin
        100
    """
    if not isinstance(config, RunConfig):
        raise TypeError(f"Expected argument `config` to be a RunConfig, but got {type(config).__name__}")
    config.validate()
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"Expected argument `threads` to be an integer >= 1 or None, but got {threads!r}")
    start = time.perf_counter()
    dataset = load_splits(config, data_dir)
    t_data = time.perf_counter() - start
    with _run_settings(threads):
        record = _fit(config, dataset, progress)
    record["timings"]["data"] = t_data
    record["timings"]["total"] = time.perf_counter() - start
    return record


def load_data(name: str, data_dir: str | None, train_size: int | None, test_size: int | None) -> data_module.Dataset:
    """:func:`labelsmooth.experiment.data.load`, remembering the last few data sets in this process."""
    env = (os.environ.get("LABELSMOOTH_DATA"), os.environ.get("XDG_CACHE_HOME"))
    return _cached_load(name, None if data_dir is None else os.path.abspath(data_dir), train_size, test_size, env)


def load_splits(config: RunConfig, data_dir: str | None = None) -> Splits:
    """The train/validation/test parts of the config's data set (:func:`make_splits`), cached per process."""
    env = (os.environ.get("LABELSMOOTH_DATA"), os.environ.get("XDG_CACHE_HOME"))
    folder = None if data_dir is None else os.path.abspath(data_dir)
    args = (config.dataset, config.train_size, config.test_size, config.split, config.val_fraction)
    return _cached_splits(*args, config.label_noise, folder, env)


@functools.lru_cache(maxsize=2)
def _cached_splits(name, train_size, test_size, split, val_fraction, label_noise, data_dir, env) -> Splits:
    splits = make_splits(_cached_load(name, data_dir, train_size, test_size, env), split, val_fraction)
    return with_label_noise(splits, label_noise, split)


@functools.lru_cache(maxsize=2)
def _cached_load(name, data_dir, train_size, test_size, _env) -> data_module.Dataset:
    return data_module.load(name, data_dir=data_dir, train_size=train_size, test_size=test_size)


def make_loss(config: RunConfig, num_classes: int) -> Callable[[Tensor, Tensor], Tensor]:
    """The config's loss as ``loss(logits (N, K), target (N,)) -> scalar``, from the library."""
    if config.loss == "cp":
        return labelsmooth.ConfidencePenaltyLoss(beta=config.beta)
    if config.loss == "ce":
        eps, convention = 0.0, "uniform"
    elif config.gamma is not None:
        eps, convention = 1.0 - config.gamma, "others"
    else:
        eps, convention = config.smoothing, config.convention
    return functools.partial(labelsmooth.cross_entropy, label_smoothing=eps, convention=convention)


def make_optimizer(config: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    lr = config.lr if config.lr is not None else DEFAULT_LR[config.optimizer]
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=config.weight_decay)


def augment(x: Tensor, padding: int, flip: bool, generator: torch.Generator) -> Tensor:
    """Random crop of each image after zero padding by ``padding`` pixels, and a random horizontal flip.

    Args:
        x: (N, C, H, W) images.

    Example:
        >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
        >>> augment(x, 0, False, torch.Generator().manual_seed(0)).equal(x)
        True
    """
    n, _, h, w = x.shape
    if padding:
        padded = nn.functional.pad(x, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        rows = (dy[:, None] + torch.arange(h))[:, None, :, None]  # (N, 1, H, 1)
        cols = (dx[:, None] + torch.arange(w))[:, None, None, :]  # (N, 1, 1, W)
        x = padded[torch.arange(n)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None], rows, cols]
    if flip:
        mask = torch.rand(n, generator=generator) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    return x


def batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Shuffled index batches covering ``range(n)``; a final batch of one example is dropped (batch norm)."""
    order = torch.randperm(n, generator=generator)
    for begin in range(0, n, batch_size):
        idx = order[begin : begin + batch_size]
        if idx.numel() > 1 or n == 1:
            yield idx


@torch.inference_mode()
def predict(model: nn.Module, x: Tensor, batch_size: int = EVAL_BATCH) -> Tensor:
    """Logits (N, K) of ``model`` in eval mode, in batches."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def _fit(config: RunConfig, dataset: Splits, progress: bool) -> dict:
    from tqdm.auto import tqdm

    info = data_module.info(config.dataset)
    K = dataset.num_classes
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = build(config.model, dataset.input_shape, K)
    loss_fn = make_loss(config, K)
    optimizer = make_optimizer(config, model)
    n = len(dataset.y_train)
    steps_per_epoch = sum(1 for _ in batches(n, config.batch_size, torch.Generator()))
    total_steps = config.epochs * steps_per_epoch
    if config.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total_steps))
        )
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    generator = torch.Generator().manual_seed(config.seed)
    x_train, y_train, x_val, y_val = dataset.x_train, dataset.y_train, dataset.x_val, dataset.y_val
    train_loss, val_accuracy = [], []
    t_train = t_eval = 0.0
    bar = tqdm(
        total=total_steps, desc=f"{_short(config.dataset)}/{config.model} {config.label()} seed={config.seed}",
        unit="step", file=sys.stderr, disable=not progress, leave=False, dynamic_ncols=True,
    )  # fmt: skip
    try:
        for epoch in range(config.epochs):
            t0 = time.perf_counter()
            model.train()
            loss_sum, seen = 0.0, 0
            for step, idx in enumerate(batches(n, config.batch_size, generator)):
                xb, yb = x_train[idx], y_train[idx]
                if config.augment:
                    xb = augment(xb, info.crop_padding, info.flip, generator)
                loss = loss_fn(model(xb), yb)
                value = loss.item()
                if not math.isfinite(value):
                    raise TrainingDiverged(
                        f"Training diverged: the loss is {value} at epoch {epoch + 1}, step {step + 1} "
                        f"({config.dataset}/{config.model}, {config.label()}, {config.optimizer} "
                        f"lr={optimizer.defaults['lr']:g}); try a smaller --lr"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                loss_sum += value * len(idx)
                seen += len(idx)
                bar.update(1)
            t1 = time.perf_counter()
            logits = predict(model, x_val)
            if not bool(torch.isfinite(logits).all()):
                raise TrainingDiverged(
                    f"Training diverged: non-finite validation logits after epoch {epoch + 1} ({config.label()})"
                )
            accuracy = float((logits.argmax(dim=1) == y_val).double().mean())
            t_train += t1 - t0
            t_eval += time.perf_counter() - t1
            train_loss.append(loss_sum / seen)
            val_accuracy.append(accuracy)
            bar.set_postfix(epoch=epoch + 1, loss=f"{train_loss[-1]:.4f}", acc=f"{accuracy:.4f}")
    finally:
        bar.close()
    t1 = time.perf_counter()
    val_logits = _rounded(logits, "validation", config)
    test_logits = _rounded(predict(model, dataset.x_test), "test", config)  # the one read of the test part
    metrics = protocol_metrics(val_logits, y_val, test_logits, dataset.y_test)
    reliability = reliability_bins(test_logits, dataset.y_test)
    reliability_ts = reliability_bins(test_logits.double() / metrics["temperature"], dataset.y_test)
    t_eval += time.perf_counter() - t1
    return {
        "config": config.to_dict(),
        "key": config.key(),
        "metrics": metrics,
        "reliability": reliability,
        "reliability_ts": reliability_ts,
        "predictions": {
            "val": {"logits": val_logits.numpy(), "labels": y_val.numpy()},
            "test": {"logits": test_logits.numpy(), "labels": dataset.y_test.numpy()},
        },
        "curves": {"train_loss": train_loss, "val_accuracy": val_accuracy},
        "timings": {"data": 0.0, "train": t_train, "eval": t_eval, "total": 0.0},
        "settings": {
            "lr": optimizer.defaults["lr"],
            "steps_per_epoch": steps_per_epoch,
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "augment": {"crop_padding": info.crop_padding, "flip": info.flip} if config.augment else None,
        },
        "data": {
            "source": dataset.source,
            "train_size": n,
            "val_size": len(y_val),
            "test_size": len(dataset.y_test),
            "num_classes": K,
            "input_shape": list(dataset.input_shape),
            "classes": list(dataset.classes),
            "class_counts": torch.bincount(y_train, minlength=K).tolist(),
        },
        "versions": versions(),
        "machine": machine(),
    }


def _rounded(logits: Tensor, part: str, config: RunConfig) -> Tensor:
    """The logits rounded to float16 (what the store keeps); diverged (non-finite) logits raise."""
    half = logits.to(torch.float16)
    if not bool(torch.isfinite(half).all()):
        raise TrainingDiverged(
            f"Training diverged: non-finite {part} logits (or beyond float16's ±65504) after training "
            f"({config.label()})"
        )
    return half


def _short(dataset: str) -> str:
    from labelsmooth.experiment import user_data

    return user_data.short_name(dataset) if user_data.is_user_name(dataset) else dataset


@contextlib.contextmanager
def _run_settings(threads: int | None) -> Iterator[None]:
    """Deterministic algorithms and the thread count for one run; both restored afterwards.

    Deterministic mode would also fill every new uninitialised tensor with NaN (a debugging aid that costs a
    pass over each allocation and changes no result of a correct op): that is switched off for the run.
    """
    import torch.utils.deterministic as det

    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    old_fill = det.fill_uninitialized_memory
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True)
        det.fill_uninitialized_memory = False
        yield
    finally:
        det.fill_uninitialized_memory = old_fill
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
        torch.set_num_threads(old_threads)


def versions() -> dict[str, str | None]:
    """Versions of Python, labelsmooth and the libraries a run depends on (None where not installed)."""
    return dict(_versions())


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version(), "labelsmooth": labelsmooth.__version__}
    out["torch"] = torch.__version__
    for dist in ("numpy", "scikit-learn", "torchmetrics", "mnist1d", "tqdm", "pillow", "pandas", "pyarrow"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def machine() -> dict[str, object]:
    """What the run ran on: platform, CPU model, CPU count and torch's thread count."""
    return {**_machine(), "threads": torch.get_num_threads()}


@functools.lru_cache(maxsize=1)
def _machine() -> dict[str, object]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "hostname": platform.node(),
    }
