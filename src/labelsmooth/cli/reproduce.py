"""``labelsmooth reproduce``: run the study protocol (quick or full), print the verdicts, write the report."""

from __future__ import annotations

import argparse

from labelsmooth.cli.sweep import add_protocol_options, add_run_options, protocol_from_args, run_protocol

_DESCRIPTION = """\
The main job. Without arguments: the quick suite (digits with 3 re-splits × 5 seeds, mnist1d with 3 seeds;
cross-entropy, γ = 0.95, 0.9, 0.8 and the confidence penalty β = 0.5; every setting tuned over the
learning rate and weight decay on a validation split, then evaluated once on test) into
labelsmooth-runs/quick.sqlite, then the report in labelsmooth-report/quick/. With --full: the full
protocol of docs/experiments.md (5 seeds, five γ, three β, full Fashion-MNIST too) into
labelsmooth-runs/full.sqlite and labelsmooth-report/full/. Interrupted? Run the same command again:
finished runs, tuning trials included, are kept."""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "reproduce",
        help="run the γ-vs-cross-entropy study protocol and write its report",
        description=_DESCRIPTION,
    )
    p.add_argument("--full", action="store_true", help="the full protocol instead of the quick suite")
    p.add_argument("--out", help="report folder (default: labelsmooth-report/{quick,full})")
    add_protocol_options(p)
    add_run_options(p, store_help="SQLite store (default: labelsmooth-runs/{quick,full}.sqlite)")
    return p


def run(args: argparse.Namespace) -> int:
    import sys
    import time

    from labelsmooth.experiment.report import write_report
    from labelsmooth.experiment.reproduce import DEFAULT_OUT, DEFAULT_STORE, protocol
    from labelsmooth.experiment.store import Store

    kind = "full" if args.full else "quick"
    store_path = args.store or DEFAULT_STORE[kind]
    out = args.out or DEFAULT_OUT[kind]
    spec = protocol_from_args(protocol(args.full), args, default_search=False)
    print(f"labelsmooth reproduce ({kind}) into {store_path}", file=sys.stderr)
    start = time.perf_counter()
    result = run_protocol(spec, store_path, args)
    wall = time.perf_counter() - start
    keys = {c.key() for c in result["configs"]}
    with Store(store_path, readonly=True) as store:
        runs = [r for r in store.runs(validate=True) if r["key"] in keys]
        sweeps = store.sweeps()
        predictions = store.predictions(keys)
    from labelsmooth.experiment.atomic import WriteError, write_error

    try:
        report = write_report(runs, sweeps, out, title=f"labelsmooth reproduce ({kind})", predictions=predictions)
    except OSError as exc:  # the runs are safe in the store; only the report could not be written
        raise exc if isinstance(exc, WriteError) else write_error(exc.filename or out, exc) from exc
    print()
    for line in report["analysis"].verdicts.values():
        print(line)
    t, f = result["trials"], result["finals"]
    failed = t["failed"] + f["failed"]
    print(
        f"\n{t['done'] + f['done']} runs trained ({t['total']} tuning trials, {f['total']} final runs, "
        f"{t['skipped'] + f['skipped']} already stored or shared), {failed} failed; {wall:.0f} s. "
        f"Report: {report['html']} (and {report['markdown']})"
    )
    return 1 if failed or result["missing"] else 0
