"""``labelsmooth export``: a store's runs as CSV, for other tools; or the slim copy a report needs."""

from __future__ import annotations

import argparse

_DESCRIPTION = """\
Write a store's runs as CSV (--csv), or a copy of the store that keeps every run but only the test
predictions of the final runs, which is all `labelsmooth report` reads (--report-store): small enough to
commit next to a report, and `labelsmooth report --store COPY` gives the same report as the original."""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export", help="export a sweep store as CSV, or its report's slim copy", description=_DESCRIPTION
    )
    p.add_argument("--store", required=True, help="SQLite store written by `labelsmooth sweep`")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--csv", help="CSV file to write")
    out.add_argument("--report-store", help="the slim store to write (every run; the finals' test predictions)")
    return p


def run(args: argparse.Namespace) -> int:
    from labelsmooth.experiment.store import Store, copy_for_report, export_csv

    with Store(args.store, readonly=True) as store:  # StoreError if missing, corrupt or not a store
        if args.csv:
            n = export_csv(store.runs(validate=True), args.csv)  # atomic: WriteError, no partial file
            print(f"wrote {n} runs to {args.csv}")
            return 0
        from labelsmooth.experiment.tuning import finals

        final_runs, _ = finals([r for r in store.runs(validate=True) if r["status"] == "done"])
        out = copy_for_report(store, args.report_store, [r["key"] for r in final_runs])
    print(
        f"wrote {args.report_store}: {out['runs']} runs, the test predictions of {out['predictions']} final runs, "
        f"{out['bytes'] / 2**20:.1f} MiB"
    )
    return 0
