"""``labelsmooth export``: a store's runs as CSV, for other tools; or the slim copy a report needs."""

from __future__ import annotations

import argparse

_DESCRIPTION = """\
Write a store's runs as CSV (--csv), or a copy of the store that keeps every run but only the test
predictions of the final runs, which is all `labelsmooth report` reads (--report-store): small enough to
commit next to a report, and `labelsmooth report --store COPY` gives the same report as the original.
With several --store, --report-store merges them (e.g. the per-part stores of docs/results/store/ back
into one store that `labelsmooth reproduce --full --store` resumes); --part keeps only the runs of those
parts of the full protocol (`labelsmooth reproduce --full --part`)."""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export", help="export a sweep store as CSV, or its report's slim copy", description=_DESCRIPTION
    )
    p.add_argument(
        "--store", required=True, action="append", help="SQLite store written by `labelsmooth sweep` (repeatable)"
    )
    p.add_argument(
        "--part",
        action="append",
        metavar="NAME",
        help="with --report-store: only the runs of this part of the full protocol (repeatable; a prefix works)",
    )
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--csv", help="CSV file to write")
    out.add_argument("--report-store", help="the slim store to write (every run; the finals' test predictions)")
    return p


def run(args: argparse.Namespace) -> int:
    import contextlib

    from labelsmooth.cli import CLIError
    from labelsmooth.experiment.store import Store, copy_for_report, export_csv

    if args.csv and (len(args.store) > 1 or args.part):
        raise CLIError("--csv takes one --store and no --part (merging and parts go with --report-store)")
    with contextlib.ExitStack() as stack:  # StoreError if a store is missing, corrupt or not a store
        stores = [stack.enter_context(Store(path, readonly=True)) for path in args.store]
        if args.csv:
            n = export_csv(stores[0].runs(validate=True), args.csv)  # atomic: WriteError, no partial file
            print(f"wrote {n} runs to {args.csv}")
            return 0
        from labelsmooth.experiment.tuning import finals

        rows = {}
        for store in stores:
            for r in store.runs(validate=True):
                rows.setdefault(r["key"], r)
        runs = list(rows.values())
        chosen = None
        if args.part:
            from labelsmooth.experiment.reproduce import parts, report_keys

            try:
                specs = [spec for _, spec in parts(full=True, only=args.part)]
            except ValueError as exc:
                raise CLIError(f"--part: {exc}") from None
            chosen = report_keys(specs, runs)
            runs = [r for r in runs if r["key"] in chosen]
        final_runs, _ = finals([r for r in runs if r["status"] == "done"])
        out = copy_for_report(stores, args.report_store, [r["key"] for r in final_runs], runs=chosen)
    print(
        f"wrote {args.report_store}: {out['runs']} runs, the test predictions of {out['predictions']} final runs, "
        f"{out['bytes'] / 2**20:.1f} MiB"
    )
    return 0
