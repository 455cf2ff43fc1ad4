"""``labelsmooth report``: statistics, verdicts and plots of a sweep store as Markdown and one HTML page."""

from __future__ import annotations

import argparse

_DESCRIPTION = """\
Write DIR/report.md (PNG figures next to it) and DIR/report.html (one self-contained page) from a sweep
store: the set-up, the hyperparameters selected on validation, mean ± 95% CI per setting, paired tests
against cross-entropy that count seeds and test examples (Holm-corrected), verdicts, accuracy/ECE against
γ and β, reliability diagrams before and after temperature scaling and the logit gap against theory."""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("report", help="write the report of a sweep store", description=_DESCRIPTION)
    p.add_argument(
        "--store",
        required=True,
        action="append",
        help="SQLite store written by `labelsmooth sweep` (repeatable: the stores' runs are reported together)",
    )
    p.add_argument("--out", required=True, help="folder to write report.md, report.html and the PNGs into")
    p.add_argument("--title", default="Label smoothing sweep", help="the report's title")
    p.add_argument("--markdown", help="write the Markdown here instead of OUT/report.md (figure links follow)")
    p.add_argument("--notes", help="a Markdown file whose text goes into the Markdown after the verdicts")
    return p


def run(args: argparse.Namespace) -> int:
    from labelsmooth.cli import CLIError
    from labelsmooth.experiment.report import write_report
    from labelsmooth.experiment.store import Store, distinct_sweeps

    rows, sweeps, predictions = {}, [], {}
    for path in args.store:
        with Store(path, readonly=True) as store:  # StoreError if missing, corrupt or not a store
            for r in store.runs(validate=True):
                rows.setdefault(r["key"], r)  # a run in several stores: the first store's row
            sweeps += store.sweeps()
            for key, value in store.predictions().items():
                predictions.setdefault(key, value)
    runs = list(rows.values())
    sweeps = distinct_sweeps(sweeps)  # per-part stores exported from one store share its sweeps
    notes = None
    if args.notes:
        try:
            with open(args.notes) as f:
                notes = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise CLIError(f"cannot read --notes {args.notes!r}: {exc}") from None
    from labelsmooth.experiment.atomic import WriteError, write_error

    try:
        result = write_report(
            runs, sweeps, args.out, title=args.title, markdown_path=args.markdown, notes=notes, predictions=predictions
        )
    except OSError as exc:  # e.g. the folder cannot be made; files themselves are written atomically
        raise exc if isinstance(exc, WriteError) else write_error(exc.filename or args.out, exc) from exc
    for line in result["analysis"].verdicts.values():
        print(line)
    print(f"wrote {result['markdown']} and {result['html']}")
    return 0
