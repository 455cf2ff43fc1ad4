"""``labelsmooth reproduce``: run the study protocol (quick or full), print the verdicts, write the report."""

from __future__ import annotations

import argparse

from labelsmooth.cli.sweep import add_protocol_options, add_run_options, protocol_from_args

_DESCRIPTION = """\
The main job. Without arguments: the quick suite (digits with 3 re-splits × 5 seeds, mnist1d with 3 seeds;
cross-entropy, γ = 0.95, 0.9, 0.8 and the confidence penalty β = 0.5; every setting tuned over the
learning rate and weight decay on a validation split, then evaluated once on test) into
labelsmooth-runs/quick.sqlite, then the report in labelsmooth-report/quick/. With --full: the full
protocol of docs/results.md (digits and mnist1d with 10 seeds, seven γ and three β; the MNIST-1D regime
map of size × label noise × training length; the full Fashion-MNIST; ResNet-20), part after part, into
labelsmooth-runs/full.sqlite and labelsmooth-report/full/; --part runs only some parts. Interrupted? Run
the same command again: finished runs, tuning trials included, are kept."""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "reproduce",
        help="run the γ-vs-cross-entropy study protocol and write its report",
        description=_DESCRIPTION,
    )
    p.add_argument("--full", action="store_true", help="the full protocol instead of the quick suite")
    p.add_argument("--out", help="report folder (default: labelsmooth-report/{quick,full})")
    p.add_argument(
        "--part",
        action="append",
        metavar="NAME",
        help="with --full: run only this part (repeatable; a prefix such as 'map' selects every map cell); "
        "the report covers every part found in the store",
    )
    add_protocol_options(p)
    add_run_options(p, store_help="SQLite store (default: labelsmooth-runs/{quick,full}.sqlite)")
    return p


def run(args: argparse.Namespace) -> int:
    import sys
    import time

    from labelsmooth.cli import CLIError
    from labelsmooth.cli.sweep import sweep_options
    from labelsmooth.experiment.report import write_report
    from labelsmooth.experiment.reproduce import DEFAULT_OUT, DEFAULT_STORE, parts, report_keys
    from labelsmooth.experiment.store import Store
    from labelsmooth.experiment.tuning import run_protocol as run

    kind = "full" if args.full else "quick"
    if args.part and not args.full:
        raise CLIError("--part needs --full (the quick suite has one part)")
    store_path = args.store or DEFAULT_STORE[kind]
    out = args.out or DEFAULT_OUT[kind]
    try:
        chosen = parts(args.full, args.part)
    except ValueError as exc:
        raise CLIError(f"--part: {exc}") from None
    every = {name: protocol_from_args(spec, args, default_search=False) for name, spec in parts(args.full)}
    specs = [(name, every[name]) for name, _ in chosen]
    print(f"labelsmooth reproduce ({kind}) into {store_path}", file=sys.stderr)
    options = sweep_options(args)
    if options.pop("check_data_first"):  # every part's data before any part runs
        from labelsmooth.experiment.runner import check_data
        from labelsmooth.experiment.tuning import trial_configs

        check_data([c for _, spec in specs for c in trial_configs(spec)], options["data_dir"])
    start = time.perf_counter()
    totals = {"trials": dict.fromkeys(("total", "done", "skipped", "failed"), 0), "missing": []}
    totals["finals"] = dict(totals["trials"])
    for i, (name, spec) in enumerate(specs, 1):
        print(f"part {i}/{len(specs)}: {name}", file=sys.stderr)
        result = run(spec, store_path, **options)
        for phase in ("trials", "finals"):
            for k in totals[phase]:
                totals[phase][k] += result[phase][k]
        totals["missing"] += [f"{name}: {m}" for m in result["missing"]]
    wall = time.perf_counter() - start
    with Store(store_path, readonly=True) as store:
        stored = store.runs(validate=True)
        keys = report_keys(list(every.values()), stored)
        runs = [r for r in stored if r["key"] in keys]
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
    t, f = totals["trials"], totals["finals"]
    failed = t["failed"] + f["failed"]
    print(
        f"\n{t['done'] + f['done']} runs trained ({t['total']} tuning trials, {f['total']} final runs, "
        f"{t['skipped'] + f['skipped']} already stored or shared), {failed} failed; {wall:.0f} s. "
        f"Report: {report['html']} (and {report['markdown']})"
    )
    for line in totals["missing"]:
        print(f"not selected (every trial failed): {line}")
    return 1 if failed or totals["missing"] else 0
