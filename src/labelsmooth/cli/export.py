"""``labelsmooth export``: a store's runs as CSV, for other tools."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("export", help="export a sweep store as CSV", description="Write a store's runs as CSV.")
    p.add_argument("--store", required=True, help="SQLite store written by `labelsmooth sweep`")
    p.add_argument("--csv", required=True, help="CSV file to write")
    return p


def run(args: argparse.Namespace) -> int:
    from labelsmooth.experiment.store import Store, export_csv

    with Store(args.store, readonly=True) as store:  # StoreError if missing, corrupt or not a store
        n = export_csv(store.runs(validate=True), args.csv)  # atomic: WriteError, no partial file
    print(f"wrote {n} runs to {args.csv}")
    return 0
