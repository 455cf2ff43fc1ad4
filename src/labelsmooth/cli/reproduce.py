"""``labelsmooth reproduce``: run the reproduction (quick or full), print the verdicts, write the report."""

from __future__ import annotations

import argparse

from labelsmooth.cli.sweep import add_run_options, run_grid

_DESCRIPTION = """\
The main job. Without arguments: a quick suite (digits, mnist1d and a 10,000/2,000 Fashion-MNIST subset;
3 seeds; cross-entropy, γ = 0.95, 0.9, 0.8 and the confidence penalty β = 0.5) into
labelsmooth-runs/quick.sqlite, then the report in labelsmooth-report/quick/. With --full: the full
protocol of docs/experiments.md (5 seeds, five γ, three β, full Fashion-MNIST) into
labelsmooth-runs/full.sqlite and labelsmooth-report/full/. Interrupted? Run the same command again:
finished runs are kept."""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "reproduce",
        help="run the γ-vs-cross-entropy reproduction and write its report",
        description=_DESCRIPTION,
    )
    p.add_argument("--full", action="store_true", help="the full protocol instead of the quick suite")
    p.add_argument("--out", help="report folder (default: labelsmooth-report/{quick,full})")
    add_run_options(p, store_help="SQLite store (default: labelsmooth-runs/{quick,full}.sqlite)")
    return p


def run(args: argparse.Namespace) -> int:
    import sys
    import time

    from labelsmooth.experiment.grid import build_grid
    from labelsmooth.experiment.report import write_report
    from labelsmooth.experiment.reproduce import DEFAULT_OUT, DEFAULT_STORE, protocol
    from labelsmooth.experiment.store import Store

    kind = "full" if args.full else "quick"
    store_path = args.store or DEFAULT_STORE[kind]
    out = args.out or DEFAULT_OUT[kind]
    grid = build_grid(protocol(args.full))
    print(f"labelsmooth reproduce ({kind}): {len(grid)} runs into {store_path}", file=sys.stderr)
    start = time.perf_counter()
    counts = run_grid(grid, store_path, args)
    wall = time.perf_counter() - start
    keys = {c.key() for c in grid}
    with Store(store_path, readonly=True) as store:
        runs = [r for r in store.runs(validate=True) if r["key"] in keys]
        sweeps = store.sweeps()
    from labelsmooth.experiment.atomic import WriteError, write_error

    try:
        result = write_report(runs, sweeps, out, title=f"labelsmooth reproduce ({kind})")
    except OSError as exc:  # the runs are safe in the store; only the report could not be written
        raise exc if isinstance(exc, WriteError) else write_error(exc.filename or out, exc) from exc
    print()
    for line in result["analysis"].verdicts.values():
        print(line)
    print(
        f"\n{counts['done']} runs trained, {counts['skipped']} already stored, {counts['failed']} failed; "
        f"{wall:.0f} s. Report: {result['html']} (and {result['markdown']})"
    )
    return 1 if counts["failed"] else 0
