"""``labelsmooth sweep``: run a grid of loss settings × seeds into a resumable SQLite store."""

from __future__ import annotations

import argparse

_DESCRIPTION = """\
Train every run of a grid (data sets × models × loss settings × seeds) and store each finished run in a
SQLite file. Plain cross-entropy is always in the grid. Rerunning the same command skips finished runs, so a
killed sweep resumes where it stopped; failed runs are retried only with --retry-failed.
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
    p = sub.add_parser("sweep", help="run a grid of settings × seeds into a resumable store", description=_DESCRIPTION)
    p.add_argument("--config", help="TOML file with the grid (keys as the options below)")
    p.add_argument("--datasets", type=_names, help="comma-separated data sets, e.g. digits,mnist1d")
    p.add_argument("--models", type=_names, help="comma-separated models, or 'auto' (default: auto)")
    p.add_argument("--gammas", type=_floats, help="γ values (probability on the true class), e.g. 0.95,0.9")
    p.add_argument("--smoothings", type=_floats, help="ε values in --convention")
    p.add_argument("--convention", choices=("uniform", "others"), help="convention of --smoothings (default uniform)")
    p.add_argument("--betas", type=_floats, help="confidence-penalty β values")
    p.add_argument("--seeds", type=_positive, help="number of seeds: 0..N-1 (default: 3)")
    p.add_argument("--epochs", type=int, help="epochs per run (default: 5)")
    p.add_argument("--batch-size", type=int, help="batch size (default: 128)")
    p.add_argument("--lr", type=float, help="learning rate (default: the optimiser's)")
    p.add_argument("--train-size", type=int, help="use the first N training examples (default: all)")
    p.add_argument("--test-size", type=int, help="use the first N test examples (default: all)")
    add_run_options(p, store_help="SQLite file to write (created if missing)", store_required=True)
    return p


def add_run_options(p: argparse.ArgumentParser, *, store_help: str, store_required: bool = False) -> None:
    """The options of every command that runs a grid into a store (``sweep``, ``reproduce``); see :func:`run_grid`."""
    p.add_argument("--store", required=store_required, help=store_help)
    p.add_argument("--workers", type=_positive, help="parallel runs (default: the number of cores)")
    p.add_argument("--backend", choices=("local", "ray"), default="local", help="where runs execute (default: local)")
    p.add_argument("--address", help="Ray cluster address (with --backend ray; default: a local instance)")
    p.add_argument("--retry-failed", action="store_true", help="run failed runs again")
    p.add_argument("--data-dir", help="extra folder to look for data sets in")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_grid(grid: list, store_path: str, args: argparse.Namespace) -> dict[str, int]:
    """Run ``grid`` into ``store_path`` with the options of :func:`add_run_options`; returns the sweep's counts."""
    import os
    import shlex
    import sys

    from labelsmooth.cli import CLIError
    from labelsmooth.experiment.runner import sweep

    if args.address and args.backend != "ray":
        raise CLIError("--address needs --backend ray")
    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        raise CLIError(f"--data-dir {args.data_dir!r} is not a folder")
    return sweep(
        grid,
        store_path,
        workers=args.workers,
        backend=args.backend,
        address=args.address,
        retry_failed=args.retry_failed,
        data_dir=args.data_dir,
        progress=not args.no_progress,
        check_data_first=True,
        command="labelsmooth " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == [args.command] else None,
    )


def spec_from_args(args: argparse.Namespace) -> dict:
    from labelsmooth.cli import CLIError
    from labelsmooth.experiment.grid import SPEC_KEYS, read_toml

    spec = read_toml(args.config) if args.config else {}
    for name in sorted(SPEC_KEYS):  # the grid keys that are also options; options override the file
        value = getattr(args, name, None)
        if value is not None:
            spec[name] = value
    if not spec.get("datasets"):
        raise CLIError("give --datasets (e.g. --datasets digits,mnist1d) or a --config file with `datasets`")
    spec.setdefault("models", ["auto"])
    return spec


def run(args: argparse.Namespace) -> int:
    from labelsmooth.experiment.grid import build_grid

    counts = run_grid(build_grid(spec_from_args(args)), args.store, args)
    print(
        f"{counts['total']} runs in the grid: {counts['skipped']} already in {args.store}, "
        f"{counts['done']} done, {counts['failed']} failed"
    )
    return 1 if counts["failed"] else 0
