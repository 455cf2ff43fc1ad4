"""``labelsmooth sweep``: run the study protocol over a grid of loss settings × seeds into a resumable store."""

from __future__ import annotations

import argparse

_DESCRIPTION = """\
Train every run of a grid (data sets × models × loss settings × seeds) and store each finished run in a
SQLite file. Plain cross-entropy is always in the grid. By default every setting is tuned on a validation
split carved from the training data (a grid over --search-lr × --search-weight-decay, the same budget for
every setting, selected on validation accuracy with the first seed), then every seed runs at the selected
point; --no-search runs the fixed --lr/--weight-decay instead. Rerunning the same command skips finished
runs (trials included), so a killed sweep resumes where it stopped; failed runs are retried only with
--retry-failed.
The grid can also come from a TOML file (--config) with the same names as the options (see
docs/experiments.md); options given on the command line override it."""


def _floats(text: str) -> list[float]:
    """Comma-separated numbers, at least one (``,,`` or ``a`` is an error, not an empty list)."""
    parts = [v.strip() for v in text.split(",")]
    if not any(parts):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, but got {text!r}")
    out = []
    for v in parts:
        try:
            out.append(float(v))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated numbers, but got {v!r} in {text!r}"
                if v
                else f"expected comma-separated numbers, but got an empty item in {text!r}"
            ) from None
    return out


def _names(text: str) -> list[str]:
    """Comma-separated names, at least one."""
    parts = [v.strip() for v in text.split(",")]
    if not all(parts):
        raise argparse.ArgumentTypeError(f"expected comma-separated names, but got an empty item in {text!r}")
    return parts


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, but got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, but got {value}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from labelsmooth.experiment.config import RunConfig
    from labelsmooth.experiment.grid import DEFAULT_SEEDS

    d = RunConfig("digits", "mlp")
    p = sub.add_parser("sweep", help="run a grid of settings × seeds into a resumable store", description=_DESCRIPTION)
    p.add_argument("--config", help="TOML file with the grid (keys as the options below)")
    p.add_argument("--datasets", type=_names, help="comma-separated data sets, e.g. digits,mnist1d")
    p.add_argument(
        "--data",
        metavar="PATH",
        action="append",
        help="your own data set (image folder, .csv, .parquet, .npz); repeatable",
    )
    from labelsmooth.cli.train import add_data_options

    add_data_options(p)
    p.add_argument(
        "--models", type=_names, help="comma-separated models (or module:callable), or 'auto' (default: auto)"
    )
    p.add_argument("--gammas", type=_floats, help="γ values (probability on the true class), e.g. 0.95,0.9")
    p.add_argument("--smoothings", type=_floats, help="ε values in --convention")
    p.add_argument("--convention", choices=("uniform", "others"), help="convention of --smoothings (default uniform)")
    p.add_argument("--betas", type=_floats, help="confidence-penalty β values")
    p.add_argument("--seeds", type=_positive, help=f"number of seeds: 0..N-1 (default: {DEFAULT_SEEDS})")
    p.add_argument("--epochs", type=int, help=f"epochs per run (default: {d.epochs})")
    p.add_argument("--batch-size", type=int, help=f"batch size (default: {d.batch_size})")
    p.add_argument("--lr", type=float, help="learning rate, fixed (default: searched; see --search-lr)")
    p.add_argument("--weight-decay", type=float, help="weight decay, fixed (default: searched)")
    add_protocol_options(p)
    p.add_argument("--train-size", type=int, help="use the first N training examples (default: all)")
    p.add_argument(
        "--label-noise",
        type=float,
        help="replace this fraction of the training and validation labels by another class (test stays clean)",
    )
    p.add_argument("--test-size", type=int, help="use the first N test examples (default: all)")
    add_run_options(p, store_help="SQLite file to write (created if missing)", store_required=True)
    return p


def add_protocol_options(p: argparse.ArgumentParser) -> None:
    """The protocol's options: search space, re-splits and validation fraction (``sweep``, ``reproduce``)."""
    from labelsmooth.experiment.tuning import DEFAULT_SEARCH

    lr, wd = (",".join(f"{v:g}" for v in DEFAULT_SEARCH[k]) for k in ("lr", "weight_decay"))
    p.add_argument("--search-lr", type=_floats, help=f"learning rates to search (sweep's default: {lr})")
    p.add_argument("--search-weight-decay", type=_floats, help=f"weight decays to search (sweep's default: {wd})")
    p.add_argument("--no-search", action="store_true", help="no tuning: run the fixed --lr/--weight-decay")
    p.add_argument(
        "--resplits", type=int, help="repeat over R train/validation partitions (digits: train/test too; default 1)"
    )
    p.add_argument("--val-fraction", type=float, help="part of the training data held out for validation (0.2)")


def protocol_from_args(spec: dict, args: argparse.Namespace, *, default_search: bool) -> dict:
    """``spec`` with the protocol options of :func:`add_protocol_options` applied (options override)."""
    from labelsmooth.cli import CLIError
    from labelsmooth.experiment.tuning import DEFAULT_SEARCH

    spec = dict(spec)
    if getattr(args, "no_search", False):
        if args.search_lr or args.search_weight_decay:
            raise CLIError("--no-search cannot be combined with --search-lr or --search-weight-decay")
        spec.pop("search", None)
    else:
        search = spec.get("search")
        if search is None and default_search:
            search = {k: v for k, v in DEFAULT_SEARCH.items() if spec.get(k) is None}
        search = dict(search or {})
        if args.search_lr:
            search["lr"] = args.search_lr
        if args.search_weight_decay:
            search["weight_decay"] = args.search_weight_decay
        if search:
            spec["search"] = search
    if args.resplits is not None:
        if args.resplits < 1:
            raise CLIError(f"--resplits must be >= 1, but got {args.resplits}")
        spec["resplits"] = args.resplits
    if args.val_fraction is not None:
        if not 0 < args.val_fraction < 1:
            raise CLIError(f"--val-fraction must be in (0, 1), but got {args.val_fraction}")
        spec["val_fraction"] = args.val_fraction
    return spec


def add_run_options(p: argparse.ArgumentParser, *, store_help: str, store_required: bool = False) -> None:
    """The options of every command that runs a grid into a store (``sweep``, ``reproduce``); see :func:`run_grid`."""
    p.add_argument("--store", required=store_required, help=store_help)
    p.add_argument("--workers", type=_positive, help="parallel runs (default: the number of cores)")
    p.add_argument("--backend", choices=("local", "ray"), default="local", help="where runs execute (default: local)")
    p.add_argument("--address", help="Ray cluster address (with --backend ray; default: a local instance)")
    p.add_argument("--retry-failed", action="store_true", help="run failed runs again")
    p.add_argument("--data-dir", help="extra folder to look for data sets in")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def sweep_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of :func:`labelsmooth.experiment.runner.sweep` from :func:`add_run_options`."""
    import os
    import shlex
    import sys

    from labelsmooth.cli import CLIError

    if args.address and args.backend != "ray":
        raise CLIError("--address needs --backend ray")
    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        raise CLIError(f"--data-dir {args.data_dir!r} is not a folder")
    return {
        "workers": args.workers,
        "backend": args.backend,
        "address": args.address,
        "retry_failed": args.retry_failed,
        "data_dir": args.data_dir,
        "progress": not args.no_progress,
        "check_data_first": True,
        "command": "labelsmooth " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == [args.command] else None,
    }


def run_grid(grid: list, store_path: str, args: argparse.Namespace) -> dict[str, int]:
    """Run ``grid`` into ``store_path`` with the options of :func:`add_run_options`; returns the sweep's counts."""
    from labelsmooth.experiment.runner import sweep

    return sweep(grid, store_path, **sweep_options(args))


def run_protocol(spec: dict, store_path: str, args: argparse.Namespace) -> dict:
    """:func:`labelsmooth.experiment.tuning.run_protocol` with the options of :func:`add_run_options`."""
    from labelsmooth.experiment.tuning import run_protocol as run

    return run(spec, store_path, **sweep_options(args))


def check_user_models(grid: list) -> None:
    """Build each user model (``module:callable``) of the grid once and check its logits before anything runs."""
    from labelsmooth.cli import CLIError
    from labelsmooth.experiment.data import info
    from labelsmooth.experiment.models import ModelError, build, is_user_model

    for dataset, model in sorted({(c.dataset, c.model) for c in grid if is_user_model(c.model)}):
        i = info(dataset)
        try:
            build(model, i.input_shape, i.num_classes)
        except ModelError as exc:
            raise CLIError(str(exc)) from None


def spec_from_args(args: argparse.Namespace) -> dict:
    from labelsmooth.cli import CLIError
    from labelsmooth.experiment.grid import SPEC_KEYS, read_toml

    spec = read_toml(args.config) if args.config else {}
    for name in sorted(SPEC_KEYS):  # the grid keys that are also options; options override the file
        value = getattr(args, name, None)
        if value is not None:
            spec[name] = value
    from labelsmooth.cli.train import check_data_options, user_dataset

    check_data_options(args)
    if getattr(args, "data", None):
        spec["datasets"] = list(spec.get("datasets") or []) + [user_dataset(args, path) for path in args.data]
    if not spec.get("datasets"):
        raise CLIError(
            "give --datasets (e.g. --datasets digits,mnist1d), --data PATH or a --config file with `datasets`"
        )
    spec.setdefault("models", ["auto"])
    return protocol_from_args(spec, args, default_search=True)


def run(args: argparse.Namespace) -> int:
    from labelsmooth.experiment.tuning import trial_configs

    spec = spec_from_args(args)
    check_user_models(trial_configs(spec))
    out = run_protocol(spec, args.store, args)
    t, f = out["trials"], out["finals"]
    print(
        f"{t['total']} tuning trials ({t['skipped']} already in {args.store}, {t['done']} done, {t['failed']} "
        f"failed); {f['total']} final runs ({f['skipped']} already there or trials, {f['done']} done, "
        f"{f['failed']} failed)"
    )
    for line in out["missing"]:
        print(f"not selected (every trial failed): {line}")
    return 1 if t["failed"] or f["failed"] or out["missing"] else 0
