"""The ``labelsmooth`` command line: one small module per subcommand.

Each subcommand module defines ``add_parser(subparsers)`` (cheap: no heavy imports) and ``run(args)``
returning an exit code.

Exit codes: 0 success; 1 a run of a sweep failed (it is stored as failed); :data:`EXIT_USAGE` (2) bad
input, reported as one line without a traceback; :data:`EXIT_WRITE` (3) an output could not be written
(disk full, read-only folder, no permission), one line naming the file; 130 interrupted.

"Bad input" is our own validation and nothing else: :class:`CLIError`, the harness's
:class:`~labelsmooth.experiment.data.DataError`, :class:`~labelsmooth.experiment.store.StoreError` and
:class:`~labelsmooth.experiment.grid.SpecError`, and a ValueError or TypeError that labelsmooth's own code
raises with its validation message ("Expected ..., but got ..."). Any other exception is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

#: Subcommand modules, in the order ``--help`` lists them.
SUBCOMMANDS = ("explain", "train", "sweep", "export", "report", "reproduce")
#: Exit code of bad input (arguments, config, data, store): one line on stderr.
EXIT_USAGE = 2
#: Exit code of an output that could not be written (distinct from 1, "a run failed").
EXIT_WRITE = 3

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status :data:`EXIT_USAGE`."""


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


def is_user_error(exc: BaseException) -> bool:
    """True for our own validation errors (see the module docstring), False for anything else (a bug).

    Example:
        >>> is_user_error(CLIError("bad")), is_user_error(KeyError("x")), is_user_error(ValueError("x"))
        (True, False, False)
    """
    if isinstance(exc, CLIError):
        return True
    harness = []
    for module, name in (
        ("labelsmooth.experiment.data", "DataError"),
        ("labelsmooth.experiment.store", "StoreError"),
        ("labelsmooth.experiment.grid", "SpecError"),
    ):
        loaded = sys.modules.get(module)  # not imported: it cannot have raised
        if loaded is not None and hasattr(loaded, name):
            harness.append(getattr(loaded, name))
    if harness and isinstance(exc, tuple(harness)):
        return True
    if type(exc) in (ValueError, TypeError) and str(exc).startswith("Expected"):
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        return tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(_PACKAGE + os.sep)
    return False


def main(argv: list[str] | None = None) -> int:
    from labelsmooth.experiment.atomic import WriteError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._module.run(args) or 0)
    except WriteError as exc:
        print(f"labelsmooth {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_WRITE
    except Exception as exc:
        if not is_user_error(exc):
            raise
        print(f"labelsmooth {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"labelsmooth {args.command}: interrupted", file=sys.stderr)
        return 130
