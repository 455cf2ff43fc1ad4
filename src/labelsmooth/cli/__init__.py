"""The ``labelsmooth`` command line: one small module per subcommand.

Each subcommand module defines ``add_parser(subparsers)`` (cheap: no heavy imports) and ``run(args)``
returning an exit code. Bad arguments raise :class:`CLIError` and are reported as one line, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: Subcommand modules, in the order ``--help`` lists them.
SUBCOMMANDS = ("explain", "train", "sweep", "export", "report", "reproduce")


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labelsmooth",
        description="Exact label smoothing for PyTorch: theory, losses and experiments.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"labelsmooth.cli.{name}")
        p = module.add_parser(sub)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._module.run(args) or 0)
    except (CLIError, ValueError, TypeError, FileNotFoundError) as exc:
        print(f"labelsmooth {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"labelsmooth {args.command}: interrupted", file=sys.stderr)
        return 130
